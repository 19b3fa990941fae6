@testable import PSTransport
import XCTest

/// The pure rules behind a server's connection limits: which connection is admitted, evicted or refused
/// (`ConnectionTable`), who may read while incomplete frames hold too many bytes (`FrameBudgetLedger`),
/// and how often a refusal is logged (`RefusalLogLimiter`).
final class ConnectionTableTests: XCTestCase {
    private func table(_ change: (inout ConnectionLimits) -> Void) -> ConnectionTable<String> {
        var limits = ConnectionLimits()
        change(&limits)
        return ConnectionTable(limits: limits)
    }

    private func admitted(_ admission: ConnectionTable<String>.Admission, file: StaticString = #filePath,
                          line: UInt = #line) -> (ConnectionID, [String])? {
        guard case let .admitted(id, evicted) = admission else {
            XCTFail("refused: \(admission)", file: file, line: line)
            return nil
        }
        return (id, evicted.map(\.1))
    }

    // Proves a flood of connections that never say hello from one address keeps only
    // pendingConnectionsPerAddressMax of them: each new one closes that address's oldest pending one,
    // and a newcomer from the same address is admitted.
    func testPendingPerAddressEvictsThatAddressesOldest() {
        var t = table { $0.pendingConnectionsPerAddressMax = 3 }
        for i in 1...3 { XCTAssertEqual(admitted(t.admit("idle-\(i)", address: "10.0.0.2"))?.1, []) }
        XCTAssertEqual(admitted(t.admit("idle-4", address: "10.0.0.2"))?.1, ["idle-1"])
        XCTAssertEqual(admitted(t.admit("worker", address: "10.0.0.2"))?.1, ["idle-2"])
        XCTAssertEqual(t.pendingCount(from: "10.0.0.2"), 3)
        // Another address is not touched by that address's flood.
        XCTAssertEqual(admitted(t.admit("other", address: "10.0.0.1"))?.1, [])
        XCTAssertEqual(t.count, 4)
    }

    // Proves an established connection is never evicted: once its hello is through it stops counting
    // as pending, and the flood evicts only its own idle connections.
    func testEstablishedConnectionsAreNeverEvicted() throws {
        var t = table { $0.pendingConnectionsPerAddressMax = 2 }
        let (worker, _) = try XCTUnwrap(admitted(t.admit("worker", address: "10.0.0.2")))
        t.establish(worker)
        var evicted: [String] = []
        for i in 1...10 { evicted += admitted(t.admit("idle-\(i)", address: "10.0.0.2"))?.1 ?? [] }
        XCTAssertEqual(evicted, (1...8).map { "idle-\($0)" })
        XCTAssertEqual(t.entries[worker]?.value, "worker")
        XCTAssertEqual(t.pendingCount, 2)
    }

    // Proves the total pending limit evicts from the address with the most pending connections, not
    // a lone peer from another address that happens to be older.
    func testTotalPendingEvictsFromTheBusiestAddress() {
        var t = table {
            $0.pendingConnectionsMax = 4
            $0.pendingConnectionsPerAddressMax = 10
        }
        XCTAssertEqual(admitted(t.admit("lone", address: "10.0.0.1"))?.1, [])
        for i in 1...3 { XCTAssertEqual(admitted(t.admit("flood-\(i)", address: "10.0.0.2"))?.1, []) }
        XCTAssertEqual(admitted(t.admit("flood-4", address: "10.0.0.2"))?.1, ["flood-1"])
        XCTAssertEqual(admitted(t.admit("new", address: "10.0.0.3"))?.1, ["flood-2"])
        XCTAssertNotNil(t.entries[1], "the older, lone pending connection stays")
    }

    // Proves the per-address limit refuses a connection when all of that address's connections are
    // established, and closes a pending one of that address instead when there is one.
    func testPerAddressLimit() throws {
        var t = table { $0.connectionsPerAddressMax = 2 }
        let (a, _) = try XCTUnwrap(admitted(t.admit("a", address: "10.0.0.2")))
        let (b, _) = try XCTUnwrap(admitted(t.admit("b", address: "10.0.0.2")))
        t.establish(a)
        XCTAssertEqual(admitted(t.admit("c", address: "10.0.0.2"))?.1, ["b"], "the pending one makes room")
        t.establish(b)  // already gone: nothing happens
        t.establish(3)
        guard case .refused(.perAddressMax, let evicted) = t.admit("d", address: "10.0.0.2") else {
            return XCTFail("expected a refusal")
        }
        XCTAssertTrue(evicted.isEmpty)
        XCTAssertNotNil(admitted(t.admit("elsewhere", address: "10.0.0.1")), "another address still gets in")
    }

    // Proves the total limit closes the oldest pending connection before refusing, and refuses
    // (`connectionsMax`) only when every connection is established.
    func testTotalLimitEvictsPendingBeforeRefusing() throws {
        var t = table { $0.connectionsMax = 3 }
        for name in ["a", "b", "c"] {
            let (id, _) = try XCTUnwrap(admitted(t.admit(name, address: "10.0.0.\(name == "b" ? 2 : 1)")))
            if name != "b" { t.establish(id) }
        }
        XCTAssertEqual(admitted(t.admit("d", address: "10.0.0.3"))?.1, ["b"])
        t.establish(4)
        guard case .refused(.connectionsMax, _) = t.admit("e", address: "10.0.0.3") else { return XCTFail("expected a refusal") }
        XCTAssertEqual(t.count, 3)
        t.remove(1)
        XCTAssertNotNil(admitted(t.admit("f", address: "10.0.0.3")), "a closed connection frees its slot")
        XCTAssertNil(t.remove(1), "removing twice does nothing")
        XCTAssertEqual(t.count(from: "10.0.0.1"), 1)
    }
}

final class FrameBudgetLedgerTests: XCTestCase {
    // Proves under the cap every connection reads; over it only the one whose frame started first reads,
    // the others are kept as waiting; a connection holding nothing always reads.
    func testOverTheCapOnlyTheOldestReads() {
        var ledger = FrameBudgetLedger<String>(bytesMax: 100)
        XCTAssertEqual(ledger.hold(1, bytes: 60, wake: "1").mayRead, true)
        XCTAssertEqual(ledger.hold(2, bytes: 40, wake: "2").mayRead, true, "exactly at the cap")
        XCTAssertEqual(ledger.hold(3, bytes: 10, wake: "3").mayRead, false)
        XCTAssertEqual(ledger.hold(2, bytes: 50, wake: "2").mayRead, false)
        XCTAssertEqual(ledger.hold(1, bytes: 80, wake: "1").mayRead, true, "the oldest frame always reads on")
        XCTAssertEqual(ledger.hold(4, bytes: 0, wake: "4").mayRead, true, "nothing held: reads")
        XCTAssertEqual(ledger.totalBytes, 140)
        XCTAssertEqual(ledger.waitingCount, 2)
    }

    // Proves freeing bytes wakes every waiting connection once, and that the next oldest then reads on
    // while the youngest waits again until the total is back under the cap.
    func testFreedBytesWakeTheWaiting() {
        var ledger = FrameBudgetLedger<String>(bytesMax: 100)
        _ = ledger.hold(1, bytes: 90, wake: "1")
        _ = ledger.hold(2, bytes: 50, wake: "2")
        _ = ledger.hold(3, bytes: 30, wake: "3")
        let (mayRead, woken) = ledger.hold(1, bytes: 0, wake: "1")  // its frame completed
        XCTAssertTrue(mayRead)
        XCTAssertEqual(Set(woken), ["2", "3"])
        XCTAssertEqual(ledger.hold(2, bytes: 50, wake: "2").mayRead, true, "now the oldest")
        XCTAssertEqual(ledger.hold(3, bytes: 30, wake: "3").mayRead, true, "80 ≤ 100")
        XCTAssertEqual(ledger.hold(3, bytes: 60, wake: "3").mayRead, false)
        XCTAssertEqual(ledger.release(2), ["3"], "a closed connection frees its bytes and wakes the rest")
        XCTAssertEqual(ledger.release(2), [], "releasing twice does nothing")
        XCTAssertEqual(ledger.totalBytes, 60)
    }
}

final class RefusalLogLimiterTests: XCTestCase {
    // Proves the first refusal of a kind is logged at once, later ones at most once per interval with
    // the count they stand for, and kinds are limited separately.
    func testOneLinePerInterval() {
        var limiter = RefusalLogLimiter(intervalSeconds: 10)
        XCTAssertEqual(limiter.record(.evicted, now: 0), 1)
        XCTAssertNil(limiter.record(.evicted, now: 1))
        XCTAssertNil(limiter.record(.evicted, now: 9.9))
        XCTAssertEqual(limiter.record(.helloTimeout, now: 9.9), 1)
        XCTAssertEqual(limiter.record(.evicted, now: 10), 3)
        XCTAssertNil(limiter.record(.evicted, now: 12))
    }
}
