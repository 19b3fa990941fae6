import PSClient
import PSTransport
import PSWire
import XCTest

/// The pure rules behind a wait that outlasts a server restart: what counts as a lost connection, and
/// when to try again or give up.
final class ReconnectScheduleTests: XCTestCase {
    /// The delays a schedule hands out from `now` on, one failure right after each delay, until it gives up.
    func delays(_ schedule: inout ReconnectSchedule, from start: Double) -> (delays: [Double], gaveUpAt: Double) {
        var now = start
        var delays: [Double] = []
        while let delay = schedule.failed(now: now, unitRandom: 0.5) {
            delays.append(delay)
            now += delay
        }
        return (delays, now)
    }

    // Proves the delays double and are capped, that the last attempt is made at the deadline (not a
    // backoff step short of it) and that the next failure gives up. (Powers of two keep the sums exact.)
    func testBackoffUpToTheDeadline() {
        var schedule = ReconnectSchedule(backoff: Backoff(initialSeconds: 0.25, maxSeconds: 4), giveUpSeconds: 20)
        let (delays, gaveUpAt) = delays(&schedule, from: 100)
        XCTAssertEqual(delays, [0.25, 0.5, 1, 2, 4, 4, 4, 4, 0.25])
        XCTAssertEqual(gaveUpAt, 120)
        XCTAssertEqual(schedule.lostAt, 100)
        XCTAssertEqual(schedule.failures, 9)
    }

    // Proves psctl's schedule starts at 0.2 s and doubles to at most 5 s, jittered by at most ±20%.
    func testPsctlBackoff() {
        var schedule = ReconnectSchedule(backoff: PSClient.reconnectBackoff, giveUpSeconds: 600)
        let first = (0..<7).map { _ in schedule.failed(now: 0, unitRandom: 0.5)! }
        for (delay, expected) in zip(first, [0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]) {
            XCTAssertEqual(delay, expected, accuracy: 1e-9)
        }
        XCTAssertEqual(schedule.failed(now: 0, unitRandom: 1)!, 6, accuracy: 1e-9)
    }

    // Proves a connection made starts the backoff and the deadline over: a server that comes back
    // within the limit each time is waited for however often it goes away.
    func testAConnectionStartsOver() {
        var schedule = ReconnectSchedule(backoff: PSClient.reconnectBackoff, giveUpSeconds: 2)
        XCTAssertEqual(schedule.failed(now: 0, unitRandom: 0.5)!, 0.2, accuracy: 1e-9)
        XCTAssertEqual(schedule.failed(now: 0.2, unitRandom: 0.5)!, 0.4, accuracy: 1e-9)
        schedule.connected()
        XCTAssertNil(schedule.lostAt)
        XCTAssertEqual(schedule.failures, 0)
        XCTAssertEqual(schedule.failed(now: 1000, unitRandom: 0.5)!, 0.2, accuracy: 1e-9)
        XCTAssertNotNil(schedule.failed(now: 1001.9, unitRandom: 0.5))
        XCTAssertNil(schedule.failed(now: 1002, unitRandom: 0.5))
    }

    // Proves 0 seconds gives up at the first failure (the wait fails at once, as it did before reconnecting).
    func testZeroGivesUpAtOnce() {
        var schedule = ReconnectSchedule(backoff: PSClient.reconnectBackoff, giveUpSeconds: 0)
        XCTAssertNil(schedule.failed(now: 5, unitRandom: 0.5))
    }

    // Proves a server that went away (unreachable, closed, no hello reply, stopping) counts as a lost
    // connection, and that an answer from the server (a refusal, a broken protocol, a wait's own
    // timeout) does not: asking again would not change it.
    func testWhatCountsAsALostConnection() {
        let server = "127.0.0.1:7070"
        func error(_ request: PSClientError.Request, _ reason: PSClientError.Reason) -> PSClientError {
            PSClientError(server: server, request: request, reason: reason)
        }
        let wait = PSClientError.Request.wait(jobId: "job-3")
        let lost = [
            error(.connect, .transport(.unreachable(address: server, reason: "connection refused"))),
            error(.connect, .transport(.timeout(address: server, waitingFor: "the reply to hello"))),
            error(wait, .transport(.closed(address: server))),
            error(wait, .refused(ErrorReply(code: .shuttingDown, message: "the server is shutting down"))),
        ]
        let answered = [
            error(wait, .refused(ErrorReply(code: .unknownJob, message: "no job 'job-3'", field: "job_id"))),
            error(.connect, .refused(ErrorReply(code: .busy, message: "too many connections"))),
            error(wait, .transport(.timeout(address: server, waitingFor: "the reply to waitJob"))),
            error(wait, .transport(.protocolError(address: server, message: "bad frame"))),
            error(wait, .unexpectedReply("ack")),
        ]
        for e in lost { XCTAssertTrue(e.isConnectionLost, "\(e)") }
        for e in answered { XCTAssertFalse(e.isConnectionLost, "\(e)") }
        XCTAssertEqual(lost[2].reasonText, "the server closed the connection")
        XCTAssertEqual("\(lost[0])", "connect on \(server): \(lost[0].reasonText)")
    }
}
