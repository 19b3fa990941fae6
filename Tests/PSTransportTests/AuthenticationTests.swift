import Foundation
import PSWire
import XCTest
@testable import PSTransport

/// The authentication handshake's rules, without sockets: both sides prove they hold the token, a
/// recorded exchange is worthless on another connection, and every way of failing is named.
final class AuthenticationTests: XCTestCase {
    let token = AuthToken(bytes: Array("correct horse battery staple".utf8))
    let other = AuthToken(bytes: Array("another token of the same length".utf8))
    var nonceCounter: UInt8 = 0

    func nonce() -> [UInt8] {
        nonceCounter &+= 1
        return Array(repeating: nonceCounter, count: AuthProof.nonceBytes)
    }

    func hello(_ client: ClientHandshake) -> Envelope { Envelope(requestId: 1, message: .hello(client.hello)) }

    /// Runs a whole handshake; returns what the server forwarded and the client's outcome.
    func run(server: AuthToken?, client: AuthToken?) -> (forwarded: [Envelope], client: ClientHandshake.Step, refusal: AuthFailure?) {
        var s = ServerHandshake(token: server)
        var c = ClientHandshake(hello: Hello(role: .worker, name: "w1", computeSignature: "sig"), token: client, nonce: nonce)
        var forwarded: [Envelope] = []
        var next = hello(c)
        for _ in 0..<4 {
            switch s.receive(next, nonce: nonce) {
            case let .forward(envelopes):
                forwarded += envelopes
                // The coordinator answers the hello.
                return (forwarded, c.receive(.helloOk(HelloOk(serverName: "s"))), nil)
            case let .reply(envelope):
                switch c.receive(envelope.message) {
                case let .send(message): next = Envelope(requestId: 2, message: message)
                case let step: return (forwarded, step, s.closed()?.0)
                }
            case let .refuse(reply, failure):
                return (forwarded, c.receive(.error(reply)), failure)
            }
        }
        XCTFail("the handshake did not end")
        return (forwarded, .fail("no end"), nil)
    }

    func testSameTokenAuthenticatesBothSidesAndForwardsTheHello() {
        let (forwarded, step, refusal) = run(server: token, client: token)
        XCTAssertEqual(forwarded.count, 1)
        guard case let .hello(h)? = forwarded.first?.message else { return XCTFail("the hello is forwarded") }
        XCTAssertEqual(h.name, "w1")
        XCTAssertEqual(h.computeSignature, "sig")
        XCTAssertEqual(step, .done(HelloOk(serverName: "s")))
        XCTAssertNil(refusal)
    }

    func testWithoutTokensNothingChanges() {
        let (forwarded, step, _) = run(server: nil, client: nil)
        XCTAssertEqual(forwarded.count, 1)
        guard case let .hello(h)? = forwarded.first?.message else { return XCTFail() }
        XCTAssertEqual(h.nonce, [], "a client without a token sends no nonce")
        XCTAssertEqual(step, .done(HelloOk(serverName: "s")))
    }

    func testEachWayOfFailing() {
        // The client has no token: refused by the server (missing), told what to pass.
        var r = run(server: token, client: nil)
        XCTAssertEqual(r.refusal, .missing)
        XCTAssertEqual(r.forwarded.count, 0)
        guard case let .fail(why) = r.client else { return XCTFail() }
        XCTAssertTrue(why.contains("--auth-token-file"), why)
        // Another token: the client does not trust the server's proof and closes without answering
        // (so an impostor server learns nothing it could relay); the server counts it as abandoned.
        r = run(server: token, client: other)
        XCTAssertEqual(r.refusal, .abandoned)
        XCTAssertEqual(r.forwarded.count, 0)
        guard case let .fail(why2) = r.client else { return XCTFail() }
        XCTAssertTrue(why2.contains("could not prove"), why2)
        // The client has a token, the server none: the client refuses the unauthenticated server.
        r = run(server: nil, client: token)
        guard case let .fail(why3) = r.client else { return XCTFail() }
        XCTAssertTrue(why3.contains("did not authenticate itself"), why3)
    }

    func testARecordedExchangeIsWorthlessOnAnotherConnection() {
        // A complete, successful exchange, recorded.
        var s1 = ServerHandshake(token: token)
        var c = ClientHandshake(hello: Hello(role: .client, name: "psctl"), token: token, nonce: nonce)
        guard case let .reply(challenge) = s1.receive(hello(c), nonce: nonce), case let .send(answer) = c.receive(challenge.message)
        else { return XCTFail() }
        XCTAssertEqual(s1.receive(Envelope(requestId: 2, message: answer), nonce: nonce).forwardedCount, 1)
        // Replayed to a new connection: a fresh server nonce, so the recorded proof does not match.
        var s2 = ServerHandshake(token: token)
        guard case .reply = s2.receive(hello(c), nonce: nonce) else { return XCTFail() }
        guard case let .refuse(reply, failure) = s2.receive(Envelope(requestId: 2, message: answer), nonce: nonce) else {
            return XCTFail("a replayed answer was accepted")
        }
        XCTAssertEqual(failure, .mismatch)
        XCTAssertEqual(reply.code, .unauthenticated)
        // The server's proof cannot be turned into a client's: different labels.
        guard case let .authChallenge(ch) = challenge.message else { return XCTFail() }
        XCTAssertFalse(AuthProof.verify(ch.serverProof, .client, token: token, hello: c.hello, serverNonce: ch.serverNonce))
    }

    func testNothingPassesBeforeTheHandshakeEnds() {
        var s = ServerHandshake(token: token)
        guard case let .refuse(_, failure) = s.receive(Envelope(requestId: 1, message: .listJobs), nonce: nonce) else { return XCTFail() }
        XCTAssertEqual(failure, .protocolViolation)
        XCTAssertEqual(s.receive(Envelope(requestId: 2, message: .listJobs), nonce: nonce), .forward([]), "nothing after a refusal")
        var t = ServerHandshake(token: token)
        let c = ClientHandshake(hello: Hello(role: .client, name: "x"), token: token, nonce: nonce)
        guard case .reply = t.receive(hello(c), nonce: nonce) else { return XCTFail() }
        guard case let .refuse(_, f2) = t.receive(Envelope(requestId: 2, message: .listJobs), nonce: nonce) else { return XCTFail() }
        XCTAssertEqual(f2, .protocolViolation)
    }

    func testTokenFiles() throws {
        let dir = NSTemporaryDirectory() + "ps-token-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = dir + "/token"
        try "0123456789abcdef0123\n".write(toFile: good, atomically: true, encoding: .utf8)
        let loaded = try AuthToken(file: good)
        XCTAssertEqual("\(loaded)", "<auth token>", "never printed")
        // The trailing newline is not part of the token: the same proofs as without it.
        let h = Hello(role: .client, name: "c", nonce: Array(repeating: 1, count: 32))
        XCTAssertEqual(AuthProof.proof(.client, token: loaded, hello: h, serverNonce: [2]),
                       AuthProof.proof(.client, token: AuthToken(bytes: Array("0123456789abcdef0123".utf8)), hello: h, serverNonce: [2]))
        let short = dir + "/short"
        try "secret\n".write(toFile: short, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AuthToken(file: short)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(short) && text.contains("at least 16"), text)
            XCTAssertFalse(text.contains("secret"), "the contents never appear: \(text)")
        }
        XCTAssertThrowsError(try AuthToken(file: dir + "/missing")) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        XCTAssertThrowsError(try AuthToken(file: dir)) { XCTAssertTrue("\($0)".contains("folder"), "\($0)") }
        XCTAssertNil(try AuthToken.load(flag: nil, environment: [:]))
        XCTAssertNotNil(try AuthToken.load(flag: nil, environment: ["PS_AUTH_TOKEN_FILE": good]))
    }

    func testListenPolicy() {
        XCTAssertTrue(ListenPolicy.isLoopback("127.0.0.1"))
        XCTAssertTrue(ListenPolicy.isLoopback("127.1.2.3"))
        XCTAssertTrue(ListenPolicy.isLoopback("localhost"))
        XCTAssertTrue(ListenPolicy.isLoopback("::1"))
        XCTAssertFalse(ListenPolicy.isLoopback("0.0.0.0"))
        XCTAssertFalse(ListenPolicy.isLoopback("10.0.0.5"))
        XCTAssertFalse(ListenPolicy.isLoopback("127.0.0.1.example.com"))
        XCTAssertNil(ListenPolicy.refusal(host: "127.0.0.1", port: 7070, authenticated: false, tls: false, insecure: false))
        XCTAssertNotNil(ListenPolicy.refusal(host: "0.0.0.0", port: 7070, authenticated: false, tls: false, insecure: false))
        XCTAssertNil(ListenPolicy.refusal(host: "0.0.0.0", port: 7070, authenticated: true, tls: false, insecure: false))
        XCTAssertNil(ListenPolicy.refusal(host: "0.0.0.0", port: 7070, authenticated: false, tls: true, insecure: false))
        XCTAssertNil(ListenPolicy.refusal(host: "0.0.0.0", port: 7070, authenticated: false, tls: false, insecure: true))
    }
}

extension ServerHandshake.Outcome {
    var forwardedCount: Int { if case let .forward(e) = self { e.count } else { -1 } }
}
