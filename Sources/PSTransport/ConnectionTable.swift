/// The limits one server puts on its connections: `TransportLimits`' values, unless a test lowers them
/// to reach them with a few connections.
struct ConnectionLimits: Sendable {
    var connectionsMax = TransportLimits.connectionsMax
    var connectionsPerAddressMax = TransportLimits.connectionsPerAddressMax
    var pendingConnectionsMax = TransportLimits.pendingConnectionsMax
    var pendingConnectionsPerAddressMax = TransportLimits.pendingConnectionsPerAddressMax
    var helloSeconds = TransportLimits.helloSeconds
    var helloFrameBytesMax = TransportLimits.helloFrameBytesMax
    var smallFrameBytesMax = TransportLimits.smallFrameBytesMax
    var incompleteFrameBytesMax = TransportLimits.incompleteFrameBytesMax
    var incompleteFrameStallSeconds = TransportLimits.incompleteFrameStallSeconds
}

/// Why a connection was refused or closed by the transport's limits: the `reason` label of
/// `ps_connections_refused_total`, and the word the log uses.
public enum ConnectionRefusal: String, Sendable, CaseIterable {
    /// `connectionsMax` connections were open, all past their hello.
    case connectionsMax = "connections_max"
    /// `connectionsPerAddressMax` connections from the peer's address were open, all past their hello.
    case perAddressMax = "per_address_max"
    /// Closed to make room for a newer connection before it said hello (a pending limit was reached).
    case evicted
    /// No hello within `helloSeconds`.
    case helloTimeout = "hello_timeout"
    /// An incomplete frame got no byte for `incompleteFrameStallSeconds`.
    case frameStalled = "frame_stalled"
}

/// The open connections of one server by id, with their peer's address and whether their hello is
/// through ("established"; before that a connection is "pending"), and the rule that admits a new one.
/// Pure: `Value` is a channel in the server, anything in a test.
///
/// Admitting a connection from address A:
/// 1. A has `pendingConnectionsPerAddressMax` pending connections: close A's oldest pending one;
/// 2. `pendingConnectionsMax` are pending: close the oldest pending one of the address with the most;
/// 3. A has `connectionsPerAddressMax` connections: close A's oldest pending one, or refuse;
/// 4. `connectionsMax` are open: close the oldest pending one of the address with the most, or refuse.
/// So a flood of connections that never say hello, from any address, keeps at most the pending limits
/// of them open, and a real peer (which says hello within milliseconds) always gets in.
struct ConnectionTable<Value> {
    struct Entry {
        var value: Value
        var address: String
        var established = false
    }

    enum Admission {
        /// Admitted with `id`; the `evicted` connections (oldest pending ones) are to be closed.
        case admitted(ConnectionID, evicted: [(ConnectionID, Value)])
        case refused(ConnectionRefusal, evicted: [(ConnectionID, Value)])
    }

    let limits: ConnectionLimits
    private(set) var entries: [ConnectionID: Entry] = [:]
    private var nextID: ConnectionID = 1
    private var countByAddress: [String: Int] = [:]
    private var pendingByAddress: [String: Int] = [:]
    private(set) var pendingCount = 0

    init(limits: ConnectionLimits) {
        self.limits = limits
    }

    var count: Int { entries.count }

    func count(from address: String) -> Int { countByAddress[address] ?? 0 }

    func pendingCount(from address: String) -> Int { pendingByAddress[address] ?? 0 }

    mutating func admit(_ value: Value, address: String) -> Admission {
        var evicted: [(ConnectionID, Value)] = []
        if pendingCount(from: address) >= limits.pendingConnectionsPerAddressMax {
            evictOldestPending(from: address, into: &evicted)
        }
        if pendingCount >= limits.pendingConnectionsMax {
            evictOldestPendingOfBusiestAddress(into: &evicted)
        }
        if count(from: address) >= limits.connectionsPerAddressMax && !evictOldestPending(from: address, into: &evicted) {
            return .refused(.perAddressMax, evicted: evicted)
        }
        if count >= limits.connectionsMax && !evictOldestPendingOfBusiestAddress(into: &evicted) {
            return .refused(.connectionsMax, evicted: evicted)
        }
        let id = nextID
        nextID += 1
        entries[id] = Entry(value: value, address: address)
        countByAddress[address, default: 0] += 1
        pendingByAddress[address, default: 0] += 1
        pendingCount += 1
        return .admitted(id, evicted: evicted)
    }

    /// `id`'s hello is through: it no longer counts as pending (and is never evicted).
    mutating func establish(_ id: ConnectionID) {
        guard let entry = entries[id], !entry.established else { return }
        entries[id]!.established = true
        decrementPending(entry.address)
    }

    /// `id` closed (or was evicted); nothing if it is not here.
    @discardableResult
    mutating func remove(_ id: ConnectionID) -> Value? {
        guard let entry = entries.removeValue(forKey: id) else { return nil }
        countByAddress[entry.address]! -= 1
        if countByAddress[entry.address] == 0 { countByAddress[entry.address] = nil }
        if !entry.established { decrementPending(entry.address) }
        return entry.value
    }

    private mutating func decrementPending(_ address: String) {
        pendingCount -= 1
        pendingByAddress[address]! -= 1
        if pendingByAddress[address] == 0 { pendingByAddress[address] = nil }
    }

    @discardableResult
    private mutating func evictOldestPending(from address: String, into evicted: inout [(ConnectionID, Value)]) -> Bool {
        // Ids grow with time: the smallest is the oldest.
        guard let id = entries.filter({ !$0.value.established && $0.value.address == address }).keys.min(),
              let value = remove(id) else { return false }
        evicted.append((id, value))
        return true
    }

    @discardableResult
    private mutating func evictOldestPendingOfBusiestAddress(into evicted: inout [(ConnectionID, Value)]) -> Bool {
        guard let busiest = pendingByAddress.max(by: { $0.value < $1.value })?.key else { return false }
        return evictOldestPending(from: busiest, into: &evicted)
    }
}

/// Decides which refusals and evictions are logged: the first of a kind at once, then at most one line
/// per `intervalSeconds` carrying the count since the last line. Pure; `now` in seconds.
struct RefusalLogLimiter {
    let intervalSeconds: Double
    private var last: [ConnectionRefusal: (at: Double, unlogged: Int)] = [:]

    init(intervalSeconds: Double) {
        self.intervalSeconds = intervalSeconds
    }

    /// The number of events of this kind the line to log now stands for, or nil: do not log this one.
    mutating func record(_ refusal: ConnectionRefusal, now: Double) -> Int? {
        guard let previous = last[refusal] else {
            last[refusal] = (now, 0)
            return 1
        }
        guard now - previous.at >= intervalSeconds else {
            last[refusal]!.unlogged += 1
            return nil
        }
        last[refusal] = (now, 0)
        return previous.unlogged + 1
    }
}

extension ConnectionTable: Sendable where Value: Sendable {}
extension ConnectionTable.Entry: Sendable where Value: Sendable {}
