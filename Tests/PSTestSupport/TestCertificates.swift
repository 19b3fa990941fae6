import Foundation

/// A folder of certificates made by `deploy/tls/make-certs.sh` (the script users run): `ca.pem`,
/// `server.pem` (SANs localhost and 127.0.0.1), `worker.pem`, `psctl.pem`, each with its `-key.pem`, and
/// for the main set `expired.pem`, valid as client and server, which expired yesterday.
public struct CertificateSet: Sendable {
    public let directory: String

    /// "DIR/NAME.pem".
    public func certificate(_ name: String) -> String { "\(directory)/\(name).pem" }
    /// "DIR/NAME-key.pem".
    public func key(_ name: String) -> String { "\(directory)/\(name)-key.pem" }
    public var ca: String { certificate("ca") }

    /// `--tls-cert`, `--tls-key` (for `name`, if given) and `--tls-ca` as command-line arguments.
    public func arguments(_ name: String?, ca: Bool = true) -> [String] {
        (name.map { ["--tls-cert", certificate($0), "--tls-key", key($0)] } ?? []) + (ca ? ["--tls-ca", self.ca] : [])
    }
}

/// Test certificates, made once per test process in a temporary folder (openssl runs in well under a second).
public enum TestCertificates {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: CertificateSet] = [:]

    /// The cluster's CA and its certificates, with `expired.pem`.
    public static func main() throws -> CertificateSet { try make("main", ["--expired", "expired"]) }
    /// Another CA with its own server, worker and psctl certificates: none of them chain to `main`'s CA.
    public static func other() throws -> CertificateSet { try make("other", ["--ca-name", "another CA"]) }
    /// `main`'s CA (reused, as make-certs.sh does with a CA already in its folder) with a server certificate
    /// for elsewhere.example only: valid, but not for localhost or 127.0.0.1.
    public static func elsewhere() throws -> CertificateSet {
        let main = try main()
        return try make("elsewhere", [], sans: ["elsewhere.example"]) { directory in
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: main.ca, toPath: "\(directory)/ca.pem")
            try FileManager.default.copyItem(atPath: main.key("ca"), toPath: "\(directory)/ca-key.pem")
        }
    }

    private static func make(_ name: String, _ options: [String], sans: [String] = ["localhost", "127.0.0.1"],
                             prepare: (String) throws -> Void = { _ in }) throws -> CertificateSet {
        lock.lock()
        defer { lock.unlock() }
        if let set = made[name] { return set }
        let directory = NSTemporaryDirectory() + "ps-certs-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: directory)
        try prepare(directory)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: repositoryRoot + "/deploy/tls/make-certs.sh")
        process.arguments = options + [directory] + sans
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "make-certs.sh failed: \(text)"])
        }
        let set = CertificateSet(directory: directory)
        made[name] = set
        return set
    }
}
