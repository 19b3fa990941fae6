@testable import PSTransport
import PSWire
import XCTest

/// ReconnectingConnection against an EchoServer that comes and goes on a fixed port.
final class ReconnectingConnectionTests: XCTestCase {
    /// Short delays so the tests take well under a second each; the schedule's shape is FramingTests'.
    private let fastBackoff = Backoff(initialSeconds: 0.02, maxSeconds: 0.1, jitter: 0.2)

    private func connection(port: Int, events: Recorder<ReconnectingConnection.Event>) -> ReconnectingConnection {
        ReconnectingConnection(address: "127.0.0.1:\(port)", hello: Hello(role: .worker, name: "worker-1"),
                               backoff: fastBackoff, logger: testLogger) { events.append($0) }
    }

    private func count(_ events: Recorder<ReconnectingConnection.Event>, connected: Bool) -> Int {
        events.items.filter { event in
            switch event {
            case .connected: connected
            case .disconnected: !connected
            case .received: false
            }
        }.count
    }

    // Proves a connection started before its server retries until the server is up, then says hello and carries messages.
    func testConnectsOnceServerStarts() throws {
        let port = try freePort()
        let events = Recorder<ReconnectingConnection.Event>()
        let connection = connection(port: port, events: events)
        defer { connection.stop() }
        connection.start()
        usleep(300_000)
        XCTAssertTrue(events.items.isEmpty, "no events while the server is down: \(events.items)")
        XCTAssertFalse(connection.send(.ack), "nothing is sent while not connected")
        let echo = try EchoServer(port: port)
        defer { echo.server.shutdown() }
        XCTAssertTrue(eventually { count(events, connected: true) == 1 })
        guard case let .connected(ok)? = events.items.first else { return XCTFail("\(events.items)") }
        XCTAssertEqual(ok.serverName, "echo")
        XCTAssertTrue(connection.send(.cancelJob(jobId: "job-1"), requestId: 9))
        XCTAssertTrue(connection.send(frame: frame(.ack, requestId: 10)))
        XCTAssertTrue(eventually {
            events.items.compactMap { if case let .received(envelope) = $0 { envelope } else { nil } } == [
                Envelope(requestId: 9, message: .cancelJob(jobId: "job-1")), Envelope(requestId: 10, message: .ack),
            ]
        })
    }

    // Proves reconnect() drops a live connection (reported as .disconnected) and connects again.
    func testReconnectDropsAndComesBack() throws {
        let echo = try EchoServer()
        defer { echo.server.shutdown() }
        let events = Recorder<ReconnectingConnection.Event>()
        let connection = connection(port: echo.port, events: events)
        defer { connection.stop() }
        connection.start()
        XCTAssertTrue(eventually { count(events, connected: true) == 1 })
        connection.reconnect()
        XCTAssertTrue(eventually { count(events, connected: false) == 1 && count(events, connected: true) == 2 },
                      "\(events.items)")
        XCTAssertTrue(connection.send(.ack))
    }

    // Proves a lost server is reported as .disconnected and the connection comes back when it restarts on the same port.
    func testReconnectsAfterServerRestart() throws {
        let first = try EchoServer()
        let port = first.port
        let events = Recorder<ReconnectingConnection.Event>()
        let connection = connection(port: port, events: events)
        defer { connection.stop() }
        connection.start()
        XCTAssertTrue(eventually { count(events, connected: true) == 1 })
        first.server.shutdown()
        XCTAssertTrue(eventually { count(events, connected: false) == 1 })
        XCTAssertFalse(connection.send(.ack))
        let second = try EchoServer(port: port)
        defer { second.server.shutdown() }
        XCTAssertTrue(eventually { count(events, connected: true) == 2 })
        XCTAssertTrue(connection.send(.ack, requestId: 3))
        XCTAssertTrue(eventually { second.events.items.contains { event in
            if case let .received(_, envelope) = event { envelope == Envelope(requestId: 3, message: .ack) } else { false }
        } })
    }

    // Proves a refused hello is reported with the server's reason, and the connection keeps retrying.
    func testRefusedHelloIsReported() throws {
        let echo = try EchoServer()
        defer { echo.server.shutdown() }
        let events = Recorder<ReconnectingConnection.Event>()
        let connection = ReconnectingConnection(
            address: echo.address, hello: Hello(role: .worker, name: "refuse-me"), backoff: fastBackoff,
            logger: testLogger) { events.append($0) }
        defer { connection.stop() }
        connection.start()
        XCTAssertTrue(eventually { count(events, connected: false) >= 2 }, "retried after the refusal")
        guard case let .disconnected(reason)? = events.items.first else { return XCTFail("\(events.items)") }
        XCTAssertTrue(reason.contains("protocol version 9 is not 1"), reason)
        XCTAssertEqual(count(events, connected: true), 0)
    }

    // Proves stop() ends the retries: a server started afterwards never sees a connection, and no event follows.
    func testStopStopsRetrying() throws {
        let port = try freePort()
        let events = Recorder<ReconnectingConnection.Event>()
        let connection = connection(port: port, events: events)
        connection.start()
        usleep(100_000)
        connection.stop()
        connection.stop()  // a second stop is harmless
        connection.start()  // and a start after stop does nothing
        let echo = try EchoServer(port: port)
        defer { echo.server.shutdown() }
        usleep(400_000)
        XCTAssertEqual(echo.connectionCount, 0)
        XCTAssertTrue(events.items.isEmpty, "\(events.items)")
    }

    // Proves stop() called from inside onEvent (on the connection's own thread) neither deadlocks nor crashes.
    func testStopFromInsideEvent() throws {
        let echo = try EchoServer()
        defer { echo.server.shutdown() }
        let events = Recorder<ReconnectingConnection.Event>()
        let box = Recorder<ReconnectingConnection>()
        let connection = ReconnectingConnection(
            address: echo.address, hello: Hello(role: .worker, name: "worker-1"), backoff: fastBackoff,
            logger: testLogger
        ) { event in
            events.append(event)
            if case .connected = event { box.items.first?.stop() }
        }
        box.append(connection)
        connection.start()
        XCTAssertTrue(eventually { count(events, connected: false) == 1 })
        guard case let .disconnected(reason)? = events.items.last else { return XCTFail("\(events.items)") }
        XCTAssertEqual(reason, "stopped")
        XCTAssertFalse(connection.send(.ack))
        usleep(100_000)
        XCTAssertEqual(count(events, connected: true), 1, "no reconnect after stop")
    }
}
