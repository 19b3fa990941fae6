import Foundation
@testable import PSTransport
import PSWire
import XCTest

/// A TransportServer's defences against its peers, over 127.0.0.1 with limits lowered so that a few
/// connections reach them: the hello deadline, the frame limit before hello, evicting idle connections,
/// the per-address limit, the cap on bytes in incomplete frames, and closing stalled frames.
final class ServerLimitsTests: XCTestCase {
    private func echo(_ change: (inout ConnectionLimits) -> Void) throws -> EchoServer {
        var limits = ConnectionLimits()
        change(&limits)
        return try EchoServer(limits: limits)
    }

    /// A weights frame of about `bytes` bytes, which the echo server sends back.
    private func bigFrame(bytes: Int, requestId: UInt64) -> [UInt8] {
        frame(.weights(Weights(jobId: "job-1", version: 1, tensor: TensorSlice(offset: 0, values: [Float](
            repeating: 0.5, count: bytes / 4)))), requestId: requestId)
    }

    private func echoed(_ peer: RawPeer, requestId: UInt64) -> Bool {
        peer.received.items.contains { if case .weights = $0.message { $0.requestId == requestId } else { false } }
    }

    // Proves a connection that does not say hello within helloSeconds is told why and closed (and
    // counted), while a connection that said hello stays.
    func testIdleConnectionIsClosedAtTheHelloDeadline() throws {
        let server = try echo { $0.helloSeconds = 0.3 }
        defer { server.server.shutdown() }
        let idle = try RawPeer(address: server.address)
        let talker = try RawPeer(address: server.address)
        try talker.hello()
        XCTAssertTrue(idle.closedByServer(within: 5))
        XCTAssertEqual(idle.errors.map(\.code), [.badRequest])
        XCTAssertEqual(idle.errors.first?.message, "no hello within 0.3 s of connecting")
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertTrue(talker.channel.isActive, "an established connection has no hello deadline")
        try talker.write(frame(.ack, requestId: 9))
        XCTAssertTrue(eventually { talker.received.items.contains { $0.requestId == 9 } })
        XCTAssertEqual(server.server.refusals[.helloTimeout], 1)
    }

    // Proves a frame over helloFrameBytesMax is refused from its length prefix before the hello (tooLarge,
    // closed), and the same size is accepted once the hello is through.
    func testLargeFrameBeforeHelloIsRefusedFromItsPrefix() throws {
        let server = try echo { _ in }
        defer { server.server.shutdown() }
        let early = try RawPeer(address: server.address)
        try early.write(lengthPrefix(TransportLimits.helloFrameBytesMax + 1))
        XCTAssertTrue(early.closedByServer())
        XCTAssertEqual(early.errors.map(\.code), [.tooLarge])
        XCTAssertEqual(server.rejections.map(\.message), ["length 65537 exceeds the 65536 bytes a connection may send before its hello"])

        let greeted = try RawPeer(address: server.address)
        try greeted.hello()
        try greeted.write(bigFrame(bytes: 200_000, requestId: 5))
        XCTAssertTrue(eventually { self.echoed(greeted, requestId: 5) })
    }

    // Proves a flood of idle connections from the address a client connects from does not lock it out:
    // each new connection closes that address's oldest one that has not said hello (told busy), and
    // the client, which says hello at once, is served.
    func testIdleFloodFromTheSameAddressLetsAClientIn() throws {
        let server = try echo {
            $0.pendingConnectionsPerAddressMax = 4
            $0.connectionsMax = 8
        }
        defer { server.server.shutdown() }
        let flood = try (0..<20).map { _ in try RawPeer(address: server.address) }
        let client = try BlockingClient(address: server.address, name: "worker")
        defer { client.close() }
        XCTAssertEqual(try client.request(.ack), .ack)
        for (i, peer) in flood.prefix(16).enumerated() {
            XCTAssertTrue(peer.closedByServer(), "flood connection \(i) still open")
            XCTAssertEqual(peer.errors.first?.code, .busy, "flood connection \(i)")
        }
        XCTAssertEqual(server.server.refusals[.evicted], 17)
    }

    // Proves connectionsPerAddressMax refuses one address's connection past it (busy) while a peer from
    // another address is served.
    func testPerAddressLimitLeavesRoomForOtherAddresses() throws {
        let server = try echo { $0.connectionsPerAddressMax = 3 }
        defer { server.server.shutdown() }
        let crowd = try (0..<3).map { _ in try RawPeer(address: server.address, source: "127.0.0.2") }
        for peer in crowd { try peer.hello() }
        let oneTooMany = try RawPeer(address: server.address, source: "127.0.0.2")
        XCTAssertTrue(oneTooMany.closedByServer())
        XCTAssertEqual(oneTooMany.errors.first?.code, .busy)
        XCTAssertTrue(oneTooMany.errors.first?.message.contains("connectionsPerAddressMax 3") ?? false)
        let client = try BlockingClient(address: server.address, name: "elsewhere")
        defer { client.close() }
        XCTAssertEqual(try client.request(.ack), .ack)
        XCTAssertEqual(server.server.refusals[.perAddressMax], 1)
        withExtendedLifetime(crowd) {}
    }

    // Proves that while incomplete frames hold more than incompleteFrameBytesMax, a connection that is not
    // the oldest holder is not read (its whole frame is sent, yet not delivered, and the server holds no
    // more of it), and that it is read and delivered once the oldest frame completes.
    func testFullBudgetStopsReadingUntilTheOldestFrameCompletes() throws {
        let server = try echo { $0.incompleteFrameBytesMax = 256 << 10 }
        defer { server.server.shutdown() }
        let oldest = try RawPeer(address: server.address)
        let waiting = try RawPeer(address: server.address)
        try oldest.hello()
        try waiting.hello()
        let first = bigFrame(bytes: 600_000, requestId: 11), second = bigFrame(bytes: 600_000, requestId: 22)

        oldest.send(Array(first.prefix(300_000)))
        XCTAssertTrue(eventually { server.server.incompleteFrameBytes >= 300_000 })
        let oldestHeld = server.server.incompleteFrameBytes
        waiting.send(Array(second.prefix(100_000)))
        XCTAssertTrue(eventually { server.server.incompleteFrameBytes > oldestHeld })
        Thread.sleep(forTimeInterval: 0.2)  // the rest of the read turn that got its first bytes
        let heldBoth = server.server.incompleteFrameBytes
        waiting.send(Array(second.dropFirst(100_000)))
        Thread.sleep(forTimeInterval: 0.5)
        print("incomplete frame bytes: oldest \(oldestHeld), both \(heldBoth), after the rest was sent \(server.server.incompleteFrameBytes)")
        XCTAssertFalse(echoed(waiting, requestId: 22), "the waiting connection was read past the cap")
        XCTAssertEqual(server.server.incompleteFrameBytes, heldBoth, "the server read more of the waiting frame")

        oldest.send(Array(first.dropFirst(300_000)))
        XCTAssertTrue(eventually { self.echoed(oldest, requestId: 11) })
        XCTAssertTrue(eventually { self.echoed(waiting, requestId: 22) }, "the waiting connection was not read again")
        XCTAssertTrue(eventually { server.server.incompleteFrameBytes == 0 })
    }

    // Proves an incomplete frame that gets no byte for incompleteFrameStallSeconds closes its connection
    // and frees its bytes.
    func testStalledFrameIsClosedAndFreed() throws {
        let server = try echo { $0.incompleteFrameStallSeconds = 0.5 }
        defer { server.server.shutdown() }
        let stalled = try RawPeer(address: server.address)
        try stalled.hello()
        stalled.send(Array(bigFrame(bytes: 600_000, requestId: 3).prefix(200_000)))
        XCTAssertTrue(eventually { server.server.incompleteFrameBytes > 0 })
        XCTAssertTrue(stalled.closedByServer(within: 5))
        XCTAssertTrue(eventually { server.server.incompleteFrameBytes == 0 })
        XCTAssertEqual(server.server.refusals[.frameStalled], 1)
    }
}

/// A client that a full server answers `busy` tries again for `busyRetrySeconds` and gets in once a
/// connection frees (psctl during a flood whose newer connections evicted its own before its hello).
final class BusyRetryTests: XCTestCase {
    // Proves `BlockingClient.connecting` tries again after `busy` and connects once a slot frees, while
    // a plain connect is refused at once; and that with no room at all it gives up with the server's answer.
    func testConnectingRetriesBusyUntilASlotFrees() throws {
        var limits = ConnectionLimits()
        limits.connectionsMax = 1
        let server = try EchoServer(limits: limits)
        defer { server.server.shutdown() }
        let holder = try BlockingClient(address: server.address, name: "holder")

        XCTAssertThrowsError(try BlockingClient(address: server.address, name: "plain")) { error in
            guard case let .remote(reply)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertEqual(reply.code, .busy)
        }
        let started = Date()
        XCTAssertThrowsError(try BlockingClient.connecting(address: server.address, name: "patient", busyRetrySeconds: 0.5)) { error in
            guard case let .remote(reply)? = error as? ClientError else { return XCTFail("\(error)") }
            XCTAssertEqual(reply.code, .busy)
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.5, "it gave up before its time")

        nonisolated(unsafe) let held = holder  // closed once, from the other thread only
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.4) { held.close() }
        let client = try BlockingClient.connecting(address: server.address, name: "patient", busyRetrySeconds: 10)
        defer { client.close() }
        XCTAssertEqual(client.serverHello.serverName, "echo")
    }
}
