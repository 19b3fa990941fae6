import Foundation
import XCTest
import PSTestSupport

/// The real binaries under `Type=notify` as systemd sees them: the datagrams they send to
/// `$NOTIFY_SOCKET`, read from a socket the test binds in systemd's place.
final class SystemdEndToEndTests: XCTestCase {
    // ps-server says READY=1 only once it listens, pings the watchdog at half of $WATCHDOG_USEC, and says
    // STOPPING=1 on SIGTERM before it exits 0; a worker says READY=1 once registered and reports, as its
    // STATUS, that it reconnects when its server is gone.
    func testServerAndWorkerNotifySystemd() throws {
        let serverSocket = try NotifySocketReceiver()
        let cluster = try LocalCluster(serverEnvironment: ["NOTIFY_SOCKET": serverSocket.notifySocket,
                                                           "WATCHDOG_USEC": "1000000"])
        defer { cluster.stop() }
        let beforeReady = try XCTUnwrap(serverSocket.messages(until: "READY=1\nSTATUS=ready"), cluster.log("server"))
        XCTAssertTrue(cluster.log("server").contains("[PSServer] listening"), "READY=1 before the server listened")
        XCTAssertTrue(beforeReady.dropLast().allSatisfy { $0 == "STATUS=starting" || $0 == "WATCHDOG=1" }, "\(beforeReady)")
        let started = Date()
        for _ in 0..<2 { XCTAssertEqual(serverSocket.next(), "WATCHDOG=1") }
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 0.5, "pings every 0.5 s, not faster")

        // A socket file this time, where the other was an abstract name.
        let workerSocket = try NotifySocketReceiver(NotifySocketReceiver.temporaryPath())
        try cluster.startWorker("w1", environment: ["NOTIFY_SOCKET": workerSocket.notifySocket])
        XCTAssertNotNil(workerSocket.messages(until: "READY=1\nSTATUS=ready"), cluster.log("w1"))

        // Empty the queue first: a unix socket holds only a few datagrams (net.unix.max_dgram_qlen).
        while serverSocket.next(timeoutSeconds: 0) != nil {}
        cluster.killServer(signal: SIGTERM)
        XCTAssertEqual(cluster.server.terminationStatus, 0, cluster.log("server"))
        let stopping = try XCTUnwrap(serverSocket.messages(until: "STOPPING=1\nSTATUS=stopping", timeoutSeconds: 2))
        XCTAssertTrue(stopping.dropLast().allSatisfy { $0 == "WATCHDOG=1" }, "\(stopping)")
        XCTAssertNotNil(workerSocket.messages(until: "STATUS=not ready: reconnecting to \(cluster.address)"), cluster.log("w1"))
    }
}
