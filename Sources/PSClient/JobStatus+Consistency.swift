import PSCore
import PSWire

extension JobStatus {
    /// The line `psctl status` shows under a job that is not `sync`, e.g. `consistency: delayed (d=1)` or
    /// `consistency: ssp (s=2), staleness p50 1, max 2 over 840 pushes`; nil for sync (the default says
    /// nothing) and for a server that does not report the mode.
    public var consistencyNote: String? {
        guard !consistency.isEmpty, consistency != ConsistencyMode.sync.rawValue else { return nil }
        guard let staleness = Self.stalenessSummary(stalenessCounts) else { return "consistency: \(consistency)" }
        return "consistency: \(consistency), staleness \(staleness)"
    }

    /// `p50 1, max 2 over 840 pushes` from counts per staleness (index = staleness); nil without pushes.
    /// The median is the smallest staleness at or below which half the pushes lie.
    public static func stalenessSummary(_ counts: [Int]) -> String? {
        let total = counts.reduce(0, +)
        guard total > 0, let most = counts.lastIndex(where: { $0 > 0 }) else { return nil }
        var below = 0
        var median = 0
        for (staleness, count) in counts.enumerated() {
            below += count
            if 2 * below >= total {
                median = staleness
                break
            }
        }
        return "p50 \(median), max \(most) over \(total) push\(total == 1 ? "" : "es")"
    }
}
