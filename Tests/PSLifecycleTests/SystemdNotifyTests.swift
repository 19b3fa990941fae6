import Foundation
import Logging
import PSLifecycle
import PSTestSupport
import ServiceLifecycle
import XCTest

/// systemd's notify protocol as values, then as datagrams on a socket the test binds in systemd's place.
final class SystemdNotifyTests: XCTestCase {
    // $NOTIFY_SOCKET is a socket file or an @abstract name; anything else is refused, not guessed at.
    func testAddressesAreParsedAsSystemdWritesThem() {
        XCTAssertEqual(SystemdNotify.Address("/run/systemd/notify"), .path("/run/systemd/notify"))
        XCTAssertEqual(SystemdNotify.Address("@/org/freedesktop/systemd1/notify/123"), .abstract("/org/freedesktop/systemd1/notify/123"))
        for refused in ["", "@", "run/notify", "vsock:2:1234", "/" + String(repeating: "a", count: 107),
                        "@" + String(repeating: "a", count: 108)] {
            XCTAssertNil(SystemdNotify.Address(refused), refused)
        }
        XCTAssertEqual(SystemdNotify.Address("/" + String(repeating: "a", count: 106)), .path("/" + String(repeating: "a", count: 106)))
    }

    // The watchdog is pinged at half its period, and only by the process it was set for.
    func testWatchdogIntervalIsHalfThePeriodForThisProcess() {
        XCTAssertEqual(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000"], pid: 7), .seconds(15))
        XCTAssertEqual(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"], pid: 7),
                       .seconds(15))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"], pid: 7))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], pid: 7))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: ["WATCHDOG_USEC": "soon"], pid: 7))
        XCTAssertNil(SystemdNotify.watchdogInterval(environment: [:], pid: 7))
    }

    // Each state is one datagram: READY=1 and STOPPING=1 where systemd needs them, a STATUS= line always.
    func testMessagesPerState() {
        XCTAssertEqual(SystemdNotify.message(for: .starting), "STATUS=starting")
        XCTAssertEqual(SystemdNotify.message(for: .ready), "READY=1\nSTATUS=ready")
        XCTAssertEqual(SystemdNotify.message(for: .unavailable(reason: "reconnecting to h:1")), "STATUS=not ready: reconnecting to h:1")
        XCTAssertEqual(SystemdNotify.message(for: .stopping), "STOPPING=1\nSTATUS=stopping")
    }

    // Stopping is final; a watcher sees the current state at once and then every change, once, in order.
    func testStatusTransitionsAndWatchers() {
        let all: [ServiceState] = [.starting, .ready, .unavailable(reason: "r"), .stopping]
        for from in all {
            for to in all {
                XCTAssertEqual(from.moving(to: to), from == .stopping ? .stopping : to, "\(from) → \(to)")
            }
        }
        let status = ServiceStatus()
        let seen = Seen()
        status.watch { seen.append($0) }
        status.enter(.unavailable(reason: "connecting"))
        status.enter(.ready)
        status.enter(.ready)
        status.enter(.stopping)
        status.enter(.ready)
        XCTAssertEqual(seen.states, [.starting, .unavailable(reason: "connecting"), .ready, .stopping])
        XCTAssertEqual(status.current, .stopping)
    }

    // Datagrams reach a socket file and an abstract-namespace socket byte for byte.
    func testSocketSendsToAPathAndToAnAbstractName() throws {
        for value in [NotifySocketReceiver.temporaryPath(), NotifySocketReceiver.abstractName()] {
            let receiver = try NotifySocketReceiver(value)
            let address = try XCTUnwrap(SystemdNotify.Address(value))
            let socket = try SystemdNotifySocket(address: address)
            try socket.send("READY=1\nSTATUS=ready")
            try socket.send(SystemdNotify.watchdogMessage)
            XCTAssertEqual(receiver.next(), "READY=1\nSTATUS=ready", "\(address)")
            XCTAssertEqual(receiver.next(), "WATCHDOG=1", "\(address)")
        }
        // Nobody listening is an error that names the socket, never a hang or a crash.
        let nobody = try SystemdNotifySocket(address: .path(NotifySocketReceiver.temporaryPath()))
        XCTAssertThrowsError(try nobody.send("READY=1")) { XCTAssertTrue("\($0)".contains("systemd notify socket"), "\($0)") }
    }

    // Without $NOTIFY_SOCKET there is no notifier; a value that is not a unix socket stops the start.
    func testNotifierNeedsAUsableNotifySocket() throws {
        XCTAssertNil(try SystemdNotifier(environment: [:], status: ServiceStatus(), logger: Logger(label: "t"), alive: {}))
        XCTAssertThrowsError(try SystemdNotifier(environment: ["NOTIFY_SOCKET": "vsock:2:99"], status: ServiceStatus(),
                                                 logger: Logger(label: "t"), alive: {}))
    }

    // The service as systemd sees it: STATUS, READY=1 when the daemon serves, watchdog pings every half
    // period while its queue turns, none while the queue is stuck, and STOPPING=1 when it stops.
    func testNotifierReportsStatesAndPingsTheWatchdogWhileAlive() async throws {
        let receiver = try NotifySocketReceiver()
        let status = ServiceStatus()
        let gate = Gate()
        let notifier = try XCTUnwrap(try SystemdNotifier(
            environment: ["NOTIFY_SOCKET": receiver.notifySocket, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "\(getpid())"],
            status: status, logger: Logger(label: "t"), alive: { await gate.pass() }))
        let group = ServiceGroup(configuration: .init(services: [.init(service: notifier)], logger: Logger(label: "t")))
        let running = Task { try await group.run() }

        let first = await receiver.nextAsync()
        XCTAssertEqual(first, "STATUS=starting")
        status.enter(.ready)
        var pings = 0
        while let message = await receiver.nextAsync(), message != "READY=1\nSTATUS=ready" {
            XCTAssertEqual(message, "WATCHDOG=1")
        }
        while pings < 3, let message = await receiver.nextAsync() {
            XCTAssertEqual(message, "WATCHDOG=1")
            pings += 1
        }
        XCTAssertEqual(pings, 3, "pings every 50 ms")

        // A stuck queue: the pings already sent arrive, then silence for six periods.
        await gate.close()
        var drained = 0
        while drained <= 5, await receiver.nextAsync(timeoutSeconds: 0.3) != nil { drained += 1 }
        XCTAssertLessThanOrEqual(drained, 5, "pings go on while the daemon's queue does not turn")
        await gate.open()
        let afterwards = await receiver.nextAsync()
        XCTAssertEqual(afterwards, "WATCHDOG=1")

        status.enter(.stopping)
        while let message = await receiver.nextAsync(), message != "STOPPING=1\nSTATUS=stopping" {
            XCTAssertEqual(message, "WATCHDOG=1")
        }
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

/// States a watcher saw.
private final class Seen: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [ServiceState] = []
    func append(_ state: ServiceState) { lock.withLock { seen.append(state) } }
    var states: [ServiceState] { lock.withLock { seen } }
}

/// Lets `alive` through while open; while closed, each caller waits until it opens.
private actor Gate {
    private var isOpen = true
    private var waiting: [CheckedContinuation<Void, Never>] = []
    func pass() async {
        if isOpen { return }
        await withCheckedContinuation { waiting.append($0) }
    }
    func close() { isOpen = false }
    func open() {
        isOpen = true
        for waiter in waiting { waiter.resume() }
        waiting = []
    }
}
