import NIOCore
@testable import PSTransport
import PSWire
import XCTest

/// A TransportServer and its clients over 127.0.0.1, with the echo logic of `EchoServer`.
final class LoopbackTests: XCTestCase {
    private var echo: EchoServer!

    override func setUpWithError() throws {
        echo = try EchoServer()
    }

    override func tearDown() {
        echo.server.shutdown()
    }

    private func client(name: String = "psctl-test") throws -> BlockingClient {
        try BlockingClient(address: echo.address, name: name)
    }

    // Proves the server reports its real port, and a client's hello, request and close reach it in order.
    func testRoundTripAndEvents() throws {
        XCTAssertTrue(echo.address.hasPrefix("127.0.0.1:"))
        XCTAssertNotEqual(echo.port, 0)
        let client = try client()
        XCTAssertEqual(client.serverHello.serverName, "echo")
        XCTAssertEqual(try client.request(.cancelJob(jobId: "job-1")), .cancelJob(jobId: "job-1"))
        XCTAssertEqual(try client.request(.ack), .ack)
        client.close()
        XCTAssertThrowsError(try client.request(.ack)) { error in
            XCTAssertEqual(error as? ClientError, .closed(address: echo.address))
        }
        XCTAssertTrue(eventually { if case .disconnected = echo.events.items.last { true } else { false } })
        let kinds = echo.events.items.map { event -> String in
            switch event {
            case let .connected(_, peer): return peer.hasPrefix("127.0.0.1:") ? "connected" : "bad peer \(peer)"
            case let .received(_, envelope): return "\(envelope.requestId):\(envelope.message.caseName)"
            case .rejected: return "rejected"
            case .tlsRejected: return "tlsRejected"
            case .unauthenticated: return "unauthenticated"
            case .disconnected: return "disconnected"
            }
        }
        XCTAssertEqual(kinds, ["connected", "1:hello", "2:cancelJob", "3:ack", "disconnected"])
    }

    // Proves a 1 MB `weights` message (250,000 floats) crosses both ways intact.
    func testOneMegabyteRoundTrip() throws {
        let values = (0..<250_000).map { Float($0) * 0.5 - 1000 }
        let weights = Message.weights(Weights(jobId: "job-1", version: 42, tensor: TensorSlice(offset: 0, values: values)))
        let client = try client()
        defer { client.close() }
        XCTAssertEqual(try client.request(weights), weights)
    }

    // Proves `send(frame:)` writes one ready encoding to several connections.
    func testSendFrameToSeveralConnections() throws {
        let peers = try (0..<2).map { _ in try RawPeer(address: echo.address) }
        XCTAssertTrue(eventually { echo.connectionCount == 2 })
        let ids = echo.events.items.compactMap { if case let .connected(id, _) = $0 { id } else { nil } }
        let shared = frame(.submitted(jobId: "job-9"))
        for id in ids { echo.server.send(frame: shared, to: id) }
        for peer in peers {
            XCTAssertTrue(eventually { peer.received.items == [Envelope(requestId: 0, message: .submitted(jobId: "job-9"))] })
        }
        echo.server.send(frame: shared, to: 999)  // an unknown connection: dropped, no crash
    }

    // Proves frames written one byte per segment are reassembled by the server's pipeline.
    func testByteByByteOverSocket() throws {
        let peer = try RawPeer(address: echo.address)
        for byte in frame(.cancelJob(jobId: "slow"), requestId: 5) { try peer.write([byte]) }
        XCTAssertTrue(eventually { peer.received.items == [Envelope(requestId: 5, message: .cancelJob(jobId: "slow"))] })
    }

    // Proves a peer sending garbage gets a badRequest reply and is closed, while another client keeps working.
    func testGarbageClosesOnlyThatConnection() throws {
        let good = try client()
        defer { good.close() }
        let bad = try RawPeer(address: echo.address)
        try bad.write(lengthPrefix(5) + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertTrue(bad.closedByServer())
        XCTAssertEqual(bad.received.items.map(\.requestId), [0])
        guard case let .error(reply)? = bad.received.items.first?.message else {
            return XCTFail("expected an error reply, got \(bad.received.items)")
        }
        XCTAssertEqual(reply.code, .badRequest)
        XCTAssertEqual(echo.rejections.map(\.kind), [.malformed])
        XCTAssertEqual(try good.request(.ack), .ack)
    }

    // Proves an oversized length prefix alone gets a tooLarge reply and a close, and the server serves on.
    func testOversizedLengthClosesOnlyThatConnection() throws {
        let bad = try RawPeer(address: echo.address)
        try bad.write(lengthPrefix(WireLimits.frameBytesMax + 1))
        XCTAssertTrue(bad.closedByServer())
        guard case let .error(reply)? = bad.received.items.first?.message else {
            return XCTFail("expected an error reply, got \(bad.received.items)")
        }
        XCTAssertEqual(reply.code, .tooLarge)
        XCTAssertEqual(echo.rejections.map(\.kind), [.tooLarge])
        let good = try client()
        defer { good.close() }
        XCTAssertEqual(try good.request(.ack), .ack)
    }

    // Proves `close(_:after:)` delivers the last envelope before the close, and the client then sees the close.
    func testCloseAfterDeliversLastEnvelope() throws {
        let client = try client()
        defer { client.close() }
        XCTAssertEqual(try client.request(.cancelJob(jobId: "bye")), .submitted(jobId: "bye"))
        XCTAssertThrowsError(try client.request(.ack)) { error in
            XCTAssertEqual(error as? ClientError, .closed(address: echo.address))
        }
        XCTAssertTrue(eventually { if case .disconnected = echo.events.items.last { true } else { false } })
    }

    // Proves an unreachable address is reported as .unreachable, naming the address and the reason.
    func testUnreachable() throws {
        let address = "127.0.0.1:\(try freePort())"
        XCTAssertThrowsError(try BlockingClient(address: address, name: "t")) { error in
            guard case let .unreachable(reported, reason)? = error as? ClientError else {
                return XCTFail("expected .unreachable, got \(error)")
            }
            XCTAssertEqual(reported, address)
            XCTAssertEqual(reason, "connection refused")
            XCTAssertEqual("\(error)", "cannot connect to \(address): connection refused")
        }
        XCTAssertThrowsError(try BlockingClient(address: "abc", name: "t")) { error in
            XCTAssertEqual(error as? ClientError, .unreachable(address: "abc", reason: "'abc' is not HOST:PORT"))
        }
    }

    // Proves a server answering the hello with .error makes the client throw .remote with that reply.
    func testHelloRefusedIsRemote() throws {
        XCTAssertThrowsError(try BlockingClient(address: echo.address, name: "refuse-me")) { error in
            guard case let .remote(reply)? = error as? ClientError else {
                return XCTFail("expected .remote, got \(error)")
            }
            XCTAssertEqual(reply.code, .versionMismatch)
        }
    }

    // Proves a request with no answer times out as .timeout, and a later request on the connection still works.
    func testRequestTimeout() throws {
        let client = try client()
        defer { client.close() }
        XCTAssertThrowsError(try client.request(.cancelJob(jobId: "silence"), timeoutSeconds: 0.2)) { error in
            XCTAssertEqual(error as? ClientError,
                           .timeout(address: echo.address, waitingFor: "the reply to cancelJob"))
        }
        XCTAssertEqual(try client.request(.ack), .ack)
    }

    // Proves connections beyond the limit are answered busy and closed, and do not count as events.
    func testConnectionLimit() throws {
        let small = try EchoServer(limits: ConnectionLimits(connectionsMax: 1))
        defer { small.server.shutdown() }
        let first = try BlockingClient(address: small.address, name: "first")
        defer { first.close() }
        XCTAssertThrowsError(try BlockingClient(address: small.address, name: "second")) { error in
            guard case let .remote(reply)? = error as? ClientError else {
                return XCTFail("expected .remote(busy), got \(error)")
            }
            XCTAssertEqual(reply.code, .busy)
        }
        XCTAssertEqual(try first.request(.ack), .ack)
        XCTAssertEqual(small.connectionCount, 1)
    }

    // Proves a port already taken is reported as ListenError naming the address and the reason.
    func testListenOnTakenPort() {
        XCTAssertThrowsError(try TransportServer.start(host: "127.0.0.1", port: echo.port, logger: testLogger) { _ in }) {
            error in
            XCTAssertEqual("\(error)", "cannot listen on 127.0.0.1:\(echo.port): address already in use")
        }
    }
}
