// TLS for every connection (swift-nio-ssl): the files a process is given, checked once at start, and
// the TLS handler that goes first in each connection's pipeline. Only this module and PSMetrics import NIOSSL.
import NIOCore
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// The TLS files a process was given (`--tls-cert`, `--tls-key`, `--tls-ca`, `--tls-server-name`, or
/// PS_TLS_CERT, PS_TLS_KEY, PS_TLS_CA). All nil: plaintext.
public struct TLSFiles: Sendable, Equatable {
    /// PEM: this process's certificate, then any intermediates.
    public var certificate: String?
    /// PEM: the certificate's private key, unencrypted.
    public var key: String?
    /// PEM: the CA certificates peers' certificates must chain to.
    public var ca: String?
    /// Clients only: the DNS name the server's certificate may carry instead of the host dialled.
    public var serverName: String?

    public init(certificate: String? = nil, key: String? = nil, ca: String? = nil, serverName: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.ca = ca
        self.serverName = serverName
    }

    /// The options as given, each file not given taken from `environment` (PS_TLS_CERT, PS_TLS_KEY, PS_TLS_CA).
    public init(certificate: String?, key: String?, ca: String?, serverName: String? = nil,
                environment: [String: String]) {
        self.init(certificate: certificate ?? environment["PS_TLS_CERT"], key: key ?? environment["PS_TLS_KEY"],
                  ca: ca ?? environment["PS_TLS_CA"], serverName: serverName)
    }

    /// No TLS option at all.
    public var isEmpty: Bool { certificate == nil && key == nil && ca == nil && serverName == nil }
}

/// TLS files a process cannot start with. The description names the option and the file:
/// "--tls-cert /etc/ps/server.pem: the certificate expired at 2024-05-01T00:00:00Z (notAfter)".
public struct TLSSetupError: Error, Equatable, CustomStringConvertible {
    public var option: String
    public var path: String?
    public var problem: String

    public var description: String { path.map { "\(option) \($0): \(problem)" } ?? "\(option): \(problem)" }
}

/// A server's TLS: its certificate and key, and with a CA, mutual TLS (every client must present a
/// certificate that chains to the CA). Built once at start; makes each connection's handler.
public struct ServerTLS: Sendable {
    let context: NIOSSLContext
    /// Whether clients must present a certificate (a CA was given).
    public let requiresClientCertificate: Bool

    /// Nil when `files` is empty (plaintext). Needs a certificate and its key; `serverName` is a client option.
    /// `now` (seconds since 1970) is when the certificate must be valid.
    public init?(_ files: TLSFiles, now: Int = Int(time(nil))) throws(TLSSetupError) {
        guard !files.isEmpty else { return nil }
        if files.serverName != nil {
            throw TLSSetupError(option: "--tls-server-name", problem: "is a client option (psctl, ps-worker)")
        }
        guard let certificatePath = files.certificate, let keyPath = files.key else {
            throw TLSSetupError(option: files.certificate == nil ? "--tls-cert" : "--tls-key",
                                problem: "missing: a TLS server needs --tls-cert and --tls-key (--tls-ca adds mutual TLS)")
        }
        let identity = try Identity(certificatePath: certificatePath, keyPath: keyPath, now: now)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: identity.chain.map { .certificate($0) }, privateKey: .privateKey(identity.key))
        configuration.minimumTLSVersion = .tlsv12
        if let caPath = files.ca {
            configuration.trustRoots = .certificates(try loadCertificates(option: "--tls-ca", path: caPath))
            // Clients are identified by their certificate, not by a host name.
            configuration.certificateVerification = .noHostnameVerification
        }
        context = try makeContext(configuration, identity)
        requiresClientCertificate = files.ca != nil
    }

    /// The first handler of an accepted connection's pipeline.
    public func makeHandler() -> NIOSSLServerHandler {
        NIOSSLServerHandler(context: context)
    }
}

/// A client's TLS: the server's certificate is checked against the CA (or, without one, the system's
/// trust store) and must name the server (`makeHandler(host:)`); with a certificate and key, the client
/// presents them (for a server that requires mutual TLS). Verification is never skipped.
public struct ClientTLS: Sendable {
    let context: NIOSSLContext
    let serverName: String?

    /// Nil when `files` is empty (plaintext); any TLS option turns TLS on.
    public init?(_ files: TLSFiles, now: Int = Int(time(nil))) throws(TLSSetupError) {
        guard !files.isEmpty else { return nil }
        if let name = files.serverName, (try? SocketAddress(ipAddress: name, port: 0)) != nil || name.isEmpty {
            throw TLSSetupError(option: "--tls-server-name", path: name,
                                problem: "must be a DNS name (an IP address is checked against the address dialled)")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .fullVerification
        if let caPath = files.ca {
            configuration.trustRoots = .certificates(try loadCertificates(option: "--tls-ca", path: caPath))
        }
        var identity: Identity?
        switch (files.certificate, files.key) {
        case let (certificatePath?, keyPath?):
            identity = try Identity(certificatePath: certificatePath, keyPath: keyPath, now: now)
            configuration.certificateChain = identity!.chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(identity!.key)
        case (nil, nil):
            break
        case (nil, _?):
            throw TLSSetupError(option: "--tls-cert", problem: "missing: --tls-key needs the certificate it belongs to")
        case (_?, nil):
            throw TLSSetupError(option: "--tls-key", problem: "missing: --tls-cert needs its private key")
        }
        context = try makeContext(configuration, identity)
        serverName = files.serverName
    }

    /// The first handler of a connection to `host` (as dialled: a DNS name or an IP address). The server's
    /// certificate must carry a DNS SAN equal to `serverName` (else to `host`, when it is a name) or an IP
    /// SAN equal to the address connected to (swift-nio-ssl's rule: either one will do).
    func makeHandler(host: String) throws -> NIOSSLClientHandler {
        let isAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        // Without a name NIOSSL checks the IP SANs against the connected address (and sends no SNI).
        return try NIOSSLClientHandler(context: context, serverHostname: serverName ?? (isAddress ? nil : host))
    }
}

/// A certificate chain and its key, read and checked: PEM, the key matches, the certificate is valid now.
private struct Identity {
    var chain: [NIOSSLCertificate]
    var key: NIOSSLPrivateKey
    var certificatePath: String
    var keyPath: String

    init(certificatePath: String, keyPath: String, now: Int) throws(TLSSetupError) {
        chain = try loadCertificates(option: "--tls-cert", path: certificatePath)
        let leaf = chain[0]
        let notAfter = Int(leaf.notValidAfter), notBefore = Int(leaf.notValidBefore)
        if notAfter < now {
            throw TLSSetupError(option: "--tls-cert", path: certificatePath,
                                problem: "the certificate expired at \(utcText(notAfter)) (notAfter); renew it")
        }
        if notBefore > now {
            throw TLSSetupError(option: "--tls-cert", path: certificatePath,
                                problem: "the certificate is not valid before \(utcText(notBefore)) (notBefore); is this host's clock right?")
        }
        let text = try readPEM(option: "--tls-key", path: keyPath)
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            throw TLSSetupError(option: "--tls-key", path: keyPath, problem: "the key is encrypted; give an unencrypted PEM key")
        }
        guard text.contains("PRIVATE KEY-----"),
              let key = try? NIOSSLPrivateKey(bytes: Array(text.utf8), format: .pem) else {
            throw TLSSetupError(option: "--tls-key", path: keyPath, problem: "not a PEM private key")
        }
        self.key = key
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}

/// The context for `configuration`; BoringSSL refuses a key that is not the certificate's here.
private func makeContext(_ configuration: TLSConfiguration, _ identity: Identity?) throws(TLSSetupError) -> NIOSSLContext {
    do {
        return try NIOSSLContext(configuration: configuration)
    } catch {
        if let identity, case NIOSSLError.failedToLoadPrivateKey = error {
            throw TLSSetupError(option: "--tls-key", path: identity.keyPath,
                                problem: "the key does not match the certificate in \(identity.certificatePath)")
        }
        throw TLSSetupError(option: "--tls-cert", path: identity?.certificatePath, problem: "unusable for TLS: \(error)")
    }
}

/// Every certificate in a PEM file (at least one).
private func loadCertificates(option: String, path: String) throws(TLSSetupError) -> [NIOSSLCertificate] {
    let text = try readPEM(option: option, path: path)
    guard text.contains("-----BEGIN CERTIFICATE-----"),
          let certificates = try? NIOSSLCertificate.fromPEMBytes(Array(text.utf8)), !certificates.isEmpty else {
        throw TLSSetupError(option: option, path: path, problem: "not a PEM certificate (no valid BEGIN CERTIFICATE block)")
    }
    return certificates
}

/// A PEM file's text; errors say why it cannot be read ("no such file or directory").
private func readPEM(option: String, path: String) throws(TLSSetupError) -> String {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw TLSSetupError(option: option, path: path, problem: errnoText()) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16 << 10)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { throw TLSSetupError(option: option, path: path, problem: errnoText()) }
        if n == 0 { break }
        bytes += chunk[0..<n]
        guard bytes.count <= TransportLimits.pemFileBytesMax else {
            throw TLSSetupError(option: option, path: path,
                                problem: "larger than \(TransportLimits.pemFileBytesMax) bytes: not a PEM file")
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

private func errnoText() -> String {
    "cannot read: " + String(cString: strerror(errno)).lowercased()
}

/// "2024-05-01T00:00:00Z" for seconds since 1970.
func utcText(_ seconds: Int) -> String {
    var t = time_t(seconds)
    var parts = tm()
    gmtime_r(&t, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
