// Assignment, EvalResult and StartJob ⇄ ps.v1: what the coordinator hands a worker and what an
// evaluation subtree sends back. Decoding checks every count and index, as Message+Wire.swift does.
import PSWireC

extension Assignment {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__Assignment> {
        let m: UnsafeMutablePointer<Ps__V1__Assignment> = arena.message(ps__v1__assignment__init)
        m.pointee.job_id = arena.string(jobId)
        m.pointee.kind = workKindTable.c(kind)
        m.pointee.step = uint64(step, "Assignment.step")
        m.pointee.epoch = uint64(epoch, "Assignment.epoch")
        m.pointee.version = uint64(version, "Assignment.version")
        m.pointee.batch_start = uint64(batchStart, "Assignment.batchStart")
        m.pointee.batch_size = uint64(batchSize, "Assignment.batchSize")
        m.pointee.n_subtrees = subtrees.count
        m.pointee.subtrees = repeatedMessages(arena, subtrees.enumerated().map { i, range in
            range.cMessage(arena, "Assignment.subtrees[\(i)]")
        })
        return m
    }

    init(c: Ps__V1__Assignment, _ path: String) throws(WireError) {
        let batchStart = try int(c.batch_start, "\(path).batch_start")
        let batchSize = try int(c.batch_size, "\(path).batch_size", min: 1)
        guard !batchStart.addingReportingOverflow(batchSize).overflow else {
            throw WireError(field: "\(path).batch_size", "batch_start \(batchStart) + \(batchSize) overflows")
        }
        let subtrees = try repeated(c.subtrees, c.n_subtrees, "\(path).subtrees") { (r, p) throws(WireError) in
            try ChunkRange(first: r.first_chunk, count: r.chunk_count, p)
        }
        // An assignment is work to do; one with no chunks would be held forever and never pushed.
        guard !subtrees.isEmpty else { throw WireError(field: "\(path).subtrees", "missing (at least one subtree)") }
        self.init(jobId: try requiredJobId(c.job_id, "\(path).job_id"),
                  kind: try workKindTable.swift(c.kind, "\(path).kind"),
                  step: try int(c.step, "\(path).step"),
                  epoch: try int(c.epoch, "\(path).epoch"),
                  version: try int(c.version, "\(path).version"),
                  batchStart: batchStart, batchSize: batchSize, subtrees: subtrees)
    }
}

extension EvalResult {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__EvalResult> {
        let m: UnsafeMutablePointer<Ps__V1__EvalResult> = arena.message(ps__v1__eval_result__init)
        m.pointee.job_id = arena.string(jobId)
        m.pointee.kind = workKindTable.c(kind)
        m.pointee.epoch = uint64(epoch, "EvalResult.epoch")
        m.pointee.first_chunk = uint64(subtree.firstChunk, "EvalResult.subtree.firstChunk")
        m.pointee.chunk_count = uint64(subtree.chunkCount, "EvalResult.subtree.chunkCount")
        m.pointee.loss_sum = lossSum
        m.pointee.correct = uint64(correct, "EvalResult.correct")
        m.pointee.samples = uint64(samples, "EvalResult.samples")
        m.pointee.squared_error_sum = squaredErrorSum
        return m
    }

    init(c: Ps__V1__EvalResult, _ path: String) throws(WireError) {
        let correct = try int(c.correct, "\(path).correct")
        let samples = try int(c.samples, "\(path).samples", min: 1)
        guard correct <= samples else {
            throw WireError(field: "\(path).correct", "\(correct) is more than the \(samples) samples")
        }
        self.init(jobId: try requiredJobId(c.job_id, "\(path).job_id"),
                  kind: try workKindTable.swift(c.kind, "\(path).kind"),
                  epoch: try int(c.epoch, "\(path).epoch"),
                  subtree: try ChunkRange(first: c.first_chunk, count: c.chunk_count, path),
                  lossSum: c.loss_sum, correct: correct, samples: samples,
                  squaredErrorSum: try nonNegative(c.squared_error_sum, "\(path).squared_error_sum"))
    }
}

extension StartJob {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__StartJob> {
        let m: UnsafeMutablePointer<Ps__V1__StartJob> = arena.message(ps__v1__start_job__init)
        m.pointee.job_id = arena.string(jobId)
        m.pointee.spec = spec.cMessage(arena)
        return m
    }

    init(c: Ps__V1__StartJob, _ path: String) throws(WireError) {
        self.init(jobId: try requiredJobId(c.job_id, "\(path).job_id"),
                  spec: try JobSpec(c: try required(c.spec, "\(path).spec"), "\(path).spec"))
    }
}

extension ChunkRange {
    func cMessage(_ arena: CArena, _ what: @autoclosure () -> String) -> UnsafeMutablePointer<Ps__V1__ChunkRange> {
        let m: UnsafeMutablePointer<Ps__V1__ChunkRange> = arena.message(ps__v1__chunk_range__init)
        m.pointee.first_chunk = uint64(firstChunk, "\(what()).firstChunk")
        m.pointee.chunk_count = uint64(chunkCount, "\(what()).chunkCount")
        return m
    }
}

let workKindTable = EnumTable<WorkKind, Ps__V1__WorkKind>([
    (.train, PS__V1__WORK_KIND__WORK_KIND_TRAIN),
    (.validate, PS__V1__WORK_KIND__WORK_KIND_VALIDATE),
    (.test, PS__V1__WORK_KIND__WORK_KIND_TEST),
])
