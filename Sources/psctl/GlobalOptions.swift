import ArgumentParser

/// Options a user may also give before the subcommand, as kubectl and docker take them
/// (`psctl --server 10.0.0.5:7070 status`). ArgumentParser gives a subcommand only the arguments after
/// its name, so these are moved there, after the subcommand's full name (`model info`), where its own
/// `ServerOptions` parses them; a subcommand that does not talk to a server refuses them by name.
enum GlobalOptions {
    /// Each global option and whether it takes a value.
    static let options: [String: Bool] = ["--server": true, "--auth-token-file": true, "--tls-cert": true, "--tls-key": true,
                                          "--tls-ca": true, "--tls-server-name": true]

    /// `arguments` (without the program name) with the global options in front of the subcommand
    /// moved after its name; unchanged when none are there.
    static func hoisted(_ arguments: [String], root: ParsableCommand.Type) -> [String] {
        var globals: [String] = []
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            guard let takesValue = options[name] else { break }
            globals.append(argument)
            if takesValue, !argument.contains("="), i + 1 < arguments.count {
                globals.append(arguments[i + 1])
                i += 1
            }
            i += 1
        }
        guard !globals.isEmpty else { return arguments }
        var rest = Array(arguments[i...])
        var command = root
        var at = 0
        while at < rest.count,
              let sub = command.configuration.subcommands.first(where: { $0._commandName == rest[at] }) {
            command = sub
            at += 1
        }
        rest.insert(contentsOf: globals, at: at)
        return rest
    }
}
