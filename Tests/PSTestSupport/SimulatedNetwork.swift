/// Time that moves only when a test moves it: every state machine takes `now` with each event, so a
/// test drives deadlines (heartbeats, timeouts) by advancing this clock.
public struct ManualClock: Sendable {
    public private(set) var now: Double

    public init(now: Double = 0) { self.now = now }

    public mutating func advance(by seconds: Double) {
        precondition(seconds >= 0, "a manual clock does not go back")
        now += seconds
    }
}

/// A seeded xorshift generator: every choice a simulation makes comes from it, so a failing seed
/// replays exactly.
public struct SeededRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    /// A number in `0..<n`.
    public mutating func next(_ n: Int) -> Int {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Int(state % UInt64(n))
    }
}

/// Messages in flight over simulated connections: each connection keeps its order (as TCP does),
/// while which connection delivers next is drawn from a `SeededRandom`, so the messages of different
/// connections interleave in every order the seeds reach.
public struct SimulatedNetwork<Message> {
    /// In send order.
    public var inFlight: [(connection: UInt64, message: Message)] = []

    public init() {}

    public var isEmpty: Bool { inFlight.isEmpty }

    public mutating func send(_ message: Message, on connection: UInt64) {
        inFlight.append((connection, message))
    }

    /// What was in flight on `connection` is lost (the connection closed).
    public mutating func drop(connection: UInt64) {
        inFlight.removeAll { $0.connection == connection }
    }

    /// Takes the oldest message of a connection drawn from `random`.
    public mutating func deliverOne(_ random: inout SeededRandom) -> (connection: UInt64, message: Message)? {
        guard !inFlight.isEmpty else { return nil }
        let pick = inFlight[random.next(inFlight.count)].connection
        let index = inFlight.firstIndex { $0.connection == pick }!
        return inFlight.remove(at: index)
    }
}
