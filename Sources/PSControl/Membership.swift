import PSCore
import PSTransport
import PSWire

/// Who is connected and which connections are workers: the coordinator's membership. Plain data with
/// the rules that touch only it (registration, heartbeats, deadlines, the cluster's status).
struct Membership {
    struct Connection {
        var peer: String
        var role: PeerRole?
        var workerId: UInt64?
        /// From a worker's hello.
        var signature: ComputeSignature?
    }

    struct Worker {
        let id: UInt64
        let connection: ConnectionID
        let name: String
        let address: String
        let threads: Int
        /// What decides the bits of its gradients (from its hello).
        let signature: ComputeSignature
        var lastHeartbeat: Double
        var stepsDone = 0
        var samplesPerSecond = 0.0
        /// Jobs this worker has been sent `startJob` for.
        var startedJobs: Set<String> = []
        /// The weights version this worker holds completely (nil: none of the running job's).
        var version: Int?
        /// Parts of a newer version it was sent as they were applied.
        var streamed: (version: Int, parts: Set<Int>)?
    }

    var connections: [ConnectionID: Connection] = [:]
    var workers: [UInt64: Worker] = [:]
    var nextWorkerId: UInt64 = 1

    /// Whether `id` is a worker's connection (sends to it are ordered behind the shard's).
    func isWorker(_ id: ConnectionID) -> Bool { connections[id]?.role == .worker }

    /// Adds a worker for connection `id`; nil when the cluster is full.
    mutating func register(_ r: RegisterWorker, on id: ConnectionID, now: Double) -> UInt64? {
        guard workers.count < CoordinatorLimits.workersMax, let peer = connections[id]?.peer,
              let signature = connections[id]?.signature else { return nil }
        let wid = nextWorkerId
        nextWorkerId += 1
        workers[wid] = Worker(id: wid, connection: id, name: r.name, address: peer, threads: r.threads,
                              signature: signature, lastHeartbeat: now)
        connections[id]!.workerId = wid
        return wid
    }

    mutating func heartbeat(_ h: Heartbeat, from wid: UInt64, now: Double) {
        workers[wid]?.lastHeartbeat = now
        workers[wid]?.stepsDone = h.stepsDone
        workers[wid]?.samplesPerSecond = h.samplesPerSecond
    }

    /// Takes a worker out; its connection, if still open, is no longer a registered worker.
    mutating func remove(_ wid: UInt64) -> Worker? {
        guard let w = workers.removeValue(forKey: wid) else { return nil }
        if let c = connections[w.connection], c.workerId == wid { connections[w.connection]!.workerId = nil }
        return w
    }

    /// Workers whose last heartbeat is older than `timeout`, in id order.
    func expired(now: Double, timeout: Double) -> [Worker] {
        workers.values.sorted { $0.id < $1.id }.filter { now - $0.lastHeartbeat > timeout }
    }

    /// No worker holds any version of the running job's weights any more (the job ended).
    mutating func forgetWeights() {
        for w in workers.keys {
            workers[w]!.version = nil
            workers[w]!.streamed = nil
        }
    }

    /// Each worker as `psctl status` shows it; `held`: chunks each holds of the current work; `excluded`:
    /// why the running job leaves a worker idle.
    func status(held: [UInt64: Int], jobId: String, excluded: (Worker) -> String, heartbeatInterval: Double,
                now: Double) -> [WorkerStatus] {
        workers.values.sorted { $0.id < $1.id }.map { w in
            let age = now - w.lastHeartbeat
            let state: WorkerState = age > 3 * heartbeatInterval ? .suspect : ((held[w.id] ?? 0) > 0 ? .working : .idle)
            let reason = excluded(w)
            return WorkerStatus(workerId: w.id, name: w.name, address: w.address, state: state, threads: w.threads,
                                lastHeartbeatAgeSeconds: age, samplesPerSecond: w.samplesPerSecond,
                                jobId: reason.isEmpty ? jobId : "", stepsDone: w.stepsDone, chunksHeld: held[w.id] ?? 0,
                                computeSignature: w.signature.description, excludedReason: reason)
        }
    }
}
