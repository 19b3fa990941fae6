import NIOCore
import NIOSSL
import NIOTLS
#if canImport(Glibc)
import Glibc
#endif

/// Why a TLS handshake failed: a fixed reason (the `reason` label of ps_tls_handshake_failures_total)
/// and a sentence for people ("certificate verify failed (unknown CA: ...)").
public struct TLSHandshakeFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: String, CaseIterable, Sendable {
        /// The peer's certificate does not chain to our CA.
        case unknownCA = "unknown_ca"
        /// The peer's certificate has expired or is not valid yet.
        case expiredCertificate = "expired_certificate"
        /// The peer presented no certificate where one is required.
        case noCertificate = "no_certificate"
        /// The server's certificate does not name the host dialled (or `--tls-server-name`).
        case wrongHost = "wrong_host"
        /// The peer refused the handshake with an alert: it does not accept our certificate, or our lack of one.
        case refusedByPeer = "refused_by_peer"
        /// The peer does not speak TLS: a plaintext client or server.
        case notTLS = "not_tls"
        /// The peer closed the connection before the handshake ended.
        case closed
        /// No handshake within `TransportLimits.tlsHandshakeSeconds`.
        case timeout
        case other
    }

    public var reason: Reason
    public var detail: String

    public init(_ reason: Reason, _ detail: String) {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { detail }

    /// Which end we are: the texts say "the client's certificate" on a server and "the server's" on a client.
    enum Side {
        case server
        case client

        var peer: String { self == .server ? "client" : "server" }
    }

    /// Classifies an error NIOSSL raised during the handshake. BoringSSL says only "CERTIFICATE_VERIFY_FAILED"
    /// for a certificate it refused, so `peerCertificate` (when it got that far) tells an expired one from
    /// one of another CA. `now`: seconds since 1970.
    static func classify(_ error: Error, side: Side, peerCertificate: NIOSSLCertificate?, now: Int) -> TLSHandshakeFailure {
        let text = String(describing: error)
        let peer = side.peer
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            if let certificate = peerCertificate {
                let notAfter = Int(certificate.notValidAfter), notBefore = Int(certificate.notValidBefore)
                if notAfter < now {
                    return .init(.expiredCertificate,
                                 "certificate verify failed (the \(peer)'s certificate expired at \(utcText(notAfter)))")
                }
                if notBefore > now {
                    return .init(.expiredCertificate,
                                 "certificate verify failed (the \(peer)'s certificate is not valid before \(utcText(notBefore)))")
                }
            }
            return .init(.unknownCA, "certificate verify failed (unknown CA: the \(peer)'s certificate is not signed by --tls-ca)")
        }
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") {
            return .init(.noCertificate, "the \(peer) presented no certificate; this server requires one (mutual TLS)")
        }
        if text.contains("failedToValidateHostname") {
            return .init(.wrongHost, "the server's certificate does not name the host dialled (see --tls-server-name)")
        }
        if let range = text.firstRange(of: "_ALERT_") {
            // "TLSV1_ALERT_UNKNOWN_CA" → "unknown ca"; the name runs to the next non-name character.
            let name = text[range.upperBound...].prefix { $0.isUppercase || $0.isNumber || $0 == "_" }
            let alert = name.lowercased().replacing("_", with: " ")
            if side == .client, alert == "certificate required" {
                return .init(.refusedByPeer,
                             "the server requires a client certificate (alert: certificate required): give --tls-cert and --tls-key")
            }
            let aboutOurCertificate = ["unknown ca", "bad certificate", "certificate expired", "certificate revoked",
                                       "certificate unknown", "unsupported certificate"].contains(alert)
            return .init(.refusedByPeer,
                         "the \(peer) refused \(aboutOurCertificate ? "our certificate" : "the handshake") (alert: \(alert))")
        }
        if ["WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL", "UNEXPECTED_RECORD",
            "PACKET_LENGTH_TOO_LONG", "ENCRYPTED_LENGTH_TOO_LONG", "RECORD_TOO_LARGE", "UNSUPPORTED_PROTOCOL"]
            .contains(where: text.contains) {
            return .init(.notTLS, "the \(peer) does not speak TLS (a plaintext \(peer)?)")
        }
        if text.contains("EOF during") || text.contains("uncleanShutdown") || error is ChannelError {
            return .init(.closed, "the \(peer) closed the connection during the TLS handshake")
        }
        return .init(.other, text)
    }
}

/// Sits right after the TLS handler until the handshake is over: turns NIOSSL's errors into one
/// `TLSHandshakeFailure` that goes down the pipeline (the connection's last handler reports it), closes
/// the connection, and gives up after `TransportLimits.tlsHandshakeSeconds`. Then it leaves the pipeline.
///
/// A server is through at `handshakeCompleted` (it has checked the client's certificate by then). Under
/// TLS 1.3 a client completes its handshake before the server has checked the client's certificate, so a
/// client is through only when the server's first bytes arrive: an alert before them is still a refusal.
final class TLSHandshakeWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let side: TLSHandshakeFailure.Side
    private var timeout: Scheduled<Void>?
    private var failed = false

    init(side: TLSHandshakeFailure.Side) {
        self.side = side
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if side == .server, case TLSUserEvent.handshakeCompleted = event {
            context.fireUserInboundEventTriggered(event)
            done(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        if side == .client { done(context: context) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Later errors of a failed handshake (the close that follows it) say nothing new.
        guard !failed else { return }
        let handler = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self)
        fail(TLSHandshakeFailure.classify(error, side: side, peerCertificate: handler?.peerCertificate, now: Int(time(nil))),
             context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        context.fireChannelInactive()
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timeout == nil else { return }
        let seconds = TransportLimits.tlsHandshakeSeconds
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(seconds: seconds)) { [self] in
            fail(TLSHandshakeFailure(.timeout, "no TLS handshake within \(seconds) s (does the \(side.peer) speak TLS?)"),
                 context: context)
        }
    }

    private func fail(_ failure: TLSHandshakeFailure, context: ChannelHandlerContext) {
        failed = true
        timeout?.cancel()
        context.fireErrorCaught(failure)
        context.close(promise: nil)
    }

    private func done(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
