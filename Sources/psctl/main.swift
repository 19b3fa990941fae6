import ArgumentParser
import Foundation
import PSCore
import PSWire

/// The controller. Exit codes: 0 success, 1 operating error (bad spec or data, unreachable server),
/// 2 usage error (unknown flag, missing argument).
struct Psctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "psctl",
        abstract: "Train dense networks on a parameter-server cluster, or locally.",
        subcommands: [Submit.self, Status.self, List.self, Cancel.self, Wait.self, Train.self, Model.self,
                      Export.self, Predict.self, Evaluate.self])
}

/// An operating error `psctl` reports on one line and exits 1 for.
struct OperatingError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

BuildTarget.requireSupportedCPU(program: "psctl")
MemoryTuning.keepLargeBuffers()
do {
    var command = try Psctl.parseAsRoot(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst()), root: Psctl.self))
    try command.run()
} catch let error as CleanExit {
    Psctl.exit(withError: error)
} catch {
    let code = Psctl.exitCode(for: error)
    if code == .success {
        Psctl.exit(withError: error)  // --help and friends
    } else if code == .validationFailure || error is ValidationError {
        FileHandle.standardError.write(Data((Psctl.fullMessage(for: error) + "\n").utf8))
        exit(2)
    } else {
        FileHandle.standardError.write(Data("psctl: error: \(error)\n".utf8))
        exit(1)
    }
}
