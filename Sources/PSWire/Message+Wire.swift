// Message ⇄ ps.v1.Envelope: one helper per group of bodies each way (frames: Envelope+Wire.swift).
import PSWireC

extension Message {
    /// Builds the envelope in `arena` and runs `body` with it while every pointer in it is valid
    /// (tensor data points into the Swift arrays, so it is only valid inside this call).
    func withEnvelope<R>(_ arena: CArena, requestId: UInt64,
                         _ body: (UnsafeMutablePointer<Ps__V1__Envelope>) -> R) -> R {
        let e: UnsafeMutablePointer<Ps__V1__Envelope> = arena.message(ps__v1__envelope__init)
        e.pointee.request_id = requestId
        switch self {
        case .hello, .helloOk, .authChallenge, .authResponse, .error, .ack, .registerWorker, .registered, .heartbeat:
            setConnectionBody(e, arena)
        case .submitJob, .submitted, .cancelJob, .fetchModel, .statusRequest, .statusReply, .listJobs, .jobList,
             .waitJob, .jobResult:
            setClientBody(e, arena)
        case .startJob, .assignment, .evalResult, .pullWeights, .pushAck:
            setTrainingBody(e, arena)
        // The bodies that point into Swift arrays (a model, a tensor), valid only inside the closure.
        case let .modelData(model):
            let m: UnsafeMutablePointer<Ps__V1__ModelData> = arena.message(ps__v1__model_data__init)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_MODEL_DATA
            e.pointee.model_data = m
            return model.withCMessage(arena) { file in
                m.pointee.model = file
                return body(e)
            }
        case let .weights(weights):
            let m: UnsafeMutablePointer<Ps__V1__Weights> = arena.message(ps__v1__weights__init)
            m.pointee.job_id = arena.string(weights.jobId)
            m.pointee.version = uint64(weights.version, "Weights.version")
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_WEIGHTS
            e.pointee.weights = m
            return weights.tensor.withCMessage(arena) { tensor in
                m.pointee.weights = tensor
                return body(e)
            }
        case let .pushGradient(push):
            let m: UnsafeMutablePointer<Ps__V1__PushGradient> = arena.message(ps__v1__push_gradient__init)
            m.pointee.job_id = arena.string(push.jobId)
            m.pointee.step = uint64(push.step, "PushGradient.step")
            m.pointee.first_chunk = uint64(push.subtree.firstChunk, "PushGradient.subtree.firstChunk")
            m.pointee.chunk_count = uint64(push.subtree.chunkCount, "PushGradient.subtree.chunkCount")
            m.pointee.loss_sum = push.lossSum
            m.pointee.correct = uint64(push.correct, "PushGradient.correct")
            m.pointee.samples = uint64(push.samples, "PushGradient.samples")
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_PUSH_GRADIENT
            e.pointee.push_gradient = m
            return push.gradient.withCMessage(arena) { tensor in
                m.pointee.gradient = tensor
                return body(e)
            }
        }
        return body(e)
    }

    /// Greetings, errors, acks, worker registration and heartbeats.
    private func setConnectionBody(_ e: UnsafeMutablePointer<Ps__V1__Envelope>, _ arena: CArena) {
        switch self {
        case let .hello(hello):
            let m: UnsafeMutablePointer<Ps__V1__Hello> = arena.message(ps__v1__hello__init)
            m.pointee.protocol_version = hello.protocolVersion
            m.pointee.role = roleTable.c(hello.role)
            m.pointee.name = arena.string(hello.name)
            m.pointee.auth_nonce = arena.binary(hello.nonce)
            m.pointee.compute_signature = arena.string(hello.computeSignature)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_HELLO
            e.pointee.hello = m
        case let .authChallenge(c):
            let m: UnsafeMutablePointer<Ps__V1__AuthChallenge> = arena.message(ps__v1__auth_challenge__init)
            m.pointee.server_nonce = arena.binary(c.serverNonce)
            m.pointee.server_proof = arena.binary(c.serverProof)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_AUTH_CHALLENGE
            e.pointee.auth_challenge = m
        case let .authResponse(proof):
            let m: UnsafeMutablePointer<Ps__V1__AuthResponse> = arena.message(ps__v1__auth_response__init)
            m.pointee.client_proof = arena.binary(proof)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_AUTH_RESPONSE
            e.pointee.auth_response = m
        case let .helloOk(ok):
            let m: UnsafeMutablePointer<Ps__V1__HelloOk> = arena.message(ps__v1__hello_ok__init)
            m.pointee.protocol_version = ok.protocolVersion
            m.pointee.server_name = arena.string(ok.serverName)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_HELLO_OK
            e.pointee.hello_ok = m
        case let .error(error):
            let m: UnsafeMutablePointer<Ps__V1__Error> = arena.message(ps__v1__error__init)
            m.pointee.code = errorCodeTable.c(error.code)
            m.pointee.message = arena.string(error.message)
            m.pointee.field = arena.string(error.field)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_ERROR
            e.pointee.error = m
        case .ack:
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_ACK
            e.pointee.ack = arena.message(ps__v1__ack__init)
        case let .registerWorker(register):
            let m: UnsafeMutablePointer<Ps__V1__RegisterWorker> = arena.message(ps__v1__register_worker__init)
            m.pointee.name = arena.string(register.name)
            m.pointee.threads = uint32(register.threads, "RegisterWorker.threads")
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_REGISTER_WORKER
            e.pointee.register_worker = m
        case let .registered(registered):
            let m: UnsafeMutablePointer<Ps__V1__Registered> = arena.message(ps__v1__registered__init)
            m.pointee.worker_id = registered.workerId
            m.pointee.heartbeat_interval_ms = uint32(registered.heartbeatIntervalMilliseconds, "Registered.heartbeatInterval")
            m.pointee.heartbeat_timeout_ms = uint32(registered.heartbeatTimeoutMilliseconds, "Registered.heartbeatTimeout")
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_REGISTERED
            e.pointee.registered = m
        case let .heartbeat(heartbeat):
            let m: UnsafeMutablePointer<Ps__V1__Heartbeat> = arena.message(ps__v1__heartbeat__init)
            m.pointee.worker_id = heartbeat.workerId
            m.pointee.steps_done = uint64(heartbeat.stepsDone, "Heartbeat.stepsDone")
            m.pointee.samples_per_second = heartbeat.samplesPerSecond
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_HEARTBEAT
            e.pointee.heartbeat = m
        default:
            preconditionFailure("setConnectionBody: not a connection message")
        }
    }

    /// Client requests and their replies, except `modelData` (see `withEnvelope`).
    private func setClientBody(_ e: UnsafeMutablePointer<Ps__V1__Envelope>, _ arena: CArena) {
        switch self {
        case let .submitJob(spec):
            let m: UnsafeMutablePointer<Ps__V1__SubmitJob> = arena.message(ps__v1__submit_job__init)
            m.pointee.spec = spec.cMessage(arena)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_SUBMIT_JOB
            e.pointee.submit_job = m
        case let .submitted(jobId):
            let m: UnsafeMutablePointer<Ps__V1__Submitted> = arena.message(ps__v1__submitted__init)
            m.pointee.job_id = arena.string(jobId)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_SUBMITTED
            e.pointee.submitted = m
        case let .cancelJob(jobId):
            let m: UnsafeMutablePointer<Ps__V1__CancelJob> = arena.message(ps__v1__cancel_job__init)
            m.pointee.job_id = arena.string(jobId)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_CANCEL_JOB
            e.pointee.cancel_job = m
        case let .fetchModel(jobId):
            let m: UnsafeMutablePointer<Ps__V1__FetchModel> = arena.message(ps__v1__fetch_model__init)
            m.pointee.job_id = arena.string(jobId)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_FETCH_MODEL
            e.pointee.fetch_model = m
        case let .statusRequest(jobId):
            let m: UnsafeMutablePointer<Ps__V1__StatusRequest> = arena.message(ps__v1__status_request__init)
            m.pointee.job_id = arena.string(jobId)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_STATUS_REQUEST
            e.pointee.status_request = m
        case let .statusReply(reply):
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_STATUS_REPLY
            e.pointee.status_reply = reply.cMessage(arena)
        case .listJobs:
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_LIST_JOBS
            e.pointee.list_jobs = arena.message(ps__v1__list_jobs__init)
        case let .jobList(jobs):
            let m: UnsafeMutablePointer<Ps__V1__JobList> = arena.message(ps__v1__job_list__init)
            m.pointee.n_jobs = jobs.count
            m.pointee.jobs = repeatedMessages(arena, jobs.map { $0.cMessage(arena) })
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_JOB_LIST
            e.pointee.job_list = m
        case let .waitJob(jobId):
            let m: UnsafeMutablePointer<Ps__V1__WaitJob> = arena.message(ps__v1__wait_job__init)
            m.pointee.job_id = arena.string(jobId)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_WAIT_JOB
            e.pointee.wait_job = m
        case let .jobResult(result):
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_JOB_RESULT
            e.pointee.job_result = result.cMessage(arena)
        default:
            preconditionFailure("setClientBody: not a client message")
        }
    }

    /// Coordinator ⇄ worker training messages, except those carrying a tensor.
    private func setTrainingBody(_ e: UnsafeMutablePointer<Ps__V1__Envelope>, _ arena: CArena) {
        switch self {
        case let .startJob(start):
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_START_JOB
            e.pointee.start_job = start.cMessage(arena)
        case let .assignment(assignment):
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_ASSIGNMENT
            e.pointee.assignment = assignment.cMessage(arena)
        case let .evalResult(result):
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_EVAL_RESULT
            e.pointee.eval_result = result.cMessage(arena)
        case let .pullWeights(pull):
            let m: UnsafeMutablePointer<Ps__V1__PullWeights> = arena.message(ps__v1__pull_weights__init)
            m.pointee.job_id = arena.string(pull.jobId)
            m.pointee.version = uint64(pull.version, "PullWeights.version")
            m.pointee.range = pull.range.cMessage(arena)
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_PULL_WEIGHTS
            e.pointee.pull_weights = m
        case let .pushAck(ack):
            let m: UnsafeMutablePointer<Ps__V1__PushAck> = arena.message(ps__v1__push_ack__init)
            m.pointee.job_id = arena.string(ack.jobId)
            m.pointee.step = uint64(ack.step, "PushAck.step")
            m.pointee.first_chunk = uint64(ack.subtree.firstChunk, "PushAck.subtree.firstChunk")
            m.pointee.chunk_count = uint64(ack.subtree.chunkCount, "PushAck.subtree.chunkCount")
            m.pointee.duplicate = ack.duplicate ? 1 : 0
            m.pointee.offset = uint64(ack.offset, "PushAck.offset")
            e.pointee.body_case = PS__V1__ENVELOPE__BODY_PUSH_ACK
            e.pointee.push_ack = m
        default:
            preconditionFailure("setTrainingBody: not a training message")
        }
    }

    /// `tensorView`: the tensor bytes of a weights or gradient body that the decoder read in place.
    /// The groups are tried in the order of the schema's bodies.
    init(c e: Ps__V1__Envelope, tensorView: ReceivedBytes? = nil) throws(WireError) {
        if let message = try Self.connectionMessage(e) {
            self = message
        } else if let message = try Self.clientMessage(e) {
            self = message
        } else if let message = try Self.trainingMessage(e, tensorView: tensorView) {
            self = message
        } else if e.body_case == PS__V1__ENVELOPE__BODY__NOT_SET {
            // Also what a body from a newer schema looks like: protobuf-c keeps it as an unknown field.
            throw WireError(field: "Envelope", "unknown body")
        } else {
            // A body protobuf-c knows but this Swift mapping does not: the mapping lags the schema.
            throw WireError(field: "Envelope.body", "body \(e.body_case.rawValue) is not supported by this build")
        }
    }

    /// Greetings, errors, acks, worker registration and heartbeats; nil for any other body.
    private static func connectionMessage(_ e: Ps__V1__Envelope) throws(WireError) -> Message? {
        switch e.body_case {
        case PS__V1__ENVELOPE__BODY_HELLO:
            let m = try required(e.hello, "Hello")
            return .hello(Hello(protocolVersion: m.protocol_version,
                                role: try roleTable.swift(m.role, "Hello.role"),
                                name: string(m.name), nonce: bytes(m.auth_nonce),
                                computeSignature: string(m.compute_signature)))
        case PS__V1__ENVELOPE__BODY_AUTH_CHALLENGE:
            let m = try required(e.auth_challenge, "AuthChallenge")
            return .authChallenge(AuthChallenge(serverNonce: bytes(m.server_nonce), serverProof: bytes(m.server_proof)))
        case PS__V1__ENVELOPE__BODY_AUTH_RESPONSE:
            let m = try required(e.auth_response, "AuthResponse")
            return .authResponse(clientProof: bytes(m.client_proof))
        case PS__V1__ENVELOPE__BODY_HELLO_OK:
            let m = try required(e.hello_ok, "HelloOk")
            return .helloOk(HelloOk(protocolVersion: m.protocol_version, serverName: string(m.server_name)))
        case PS__V1__ENVELOPE__BODY_ERROR:
            let m = try required(e.error, "Error")
            return .error(ErrorReply(code: try errorCodeTable.swift(m.code, "Error.code"),
                                     message: string(m.message), field: string(m.field)))
        case PS__V1__ENVELOPE__BODY_ACK:
            return .ack
        case PS__V1__ENVELOPE__BODY_REGISTER_WORKER:
            let m = try required(e.register_worker, "RegisterWorker")
            return .registerWorker(RegisterWorker(name: string(m.name),
                                                  threads: try int(m.threads, "RegisterWorker.threads", min: 1)))
        case PS__V1__ENVELOPE__BODY_REGISTERED:
            let m = try required(e.registered, "Registered")
            return .registered(Registered(
                workerId: m.worker_id,
                heartbeatIntervalMilliseconds: try int(m.heartbeat_interval_ms, "Registered.heartbeat_interval_ms", min: 1),
                heartbeatTimeoutMilliseconds: try int(m.heartbeat_timeout_ms, "Registered.heartbeat_timeout_ms", min: 1)))
        case PS__V1__ENVELOPE__BODY_HEARTBEAT:
            let m = try required(e.heartbeat, "Heartbeat")
            return .heartbeat(Heartbeat(workerId: m.worker_id,
                                        stepsDone: try int(m.steps_done, "Heartbeat.steps_done"),
                                        samplesPerSecond: m.samples_per_second))
        default:
            return nil
        }
    }

    /// Client requests and their replies; nil for any other body.
    private static func clientMessage(_ e: Ps__V1__Envelope) throws(WireError) -> Message? {
        switch e.body_case {
        case PS__V1__ENVELOPE__BODY_SUBMIT_JOB:
            let m = try required(e.submit_job, "SubmitJob")
            return .submitJob(try JobSpec(c: try required(m.spec, "SubmitJob.spec"), "SubmitJob.spec"))
        case PS__V1__ENVELOPE__BODY_SUBMITTED:
            return .submitted(jobId: try requiredJobId(try required(e.submitted, "Submitted").job_id, "Submitted.job_id"))
        case PS__V1__ENVELOPE__BODY_CANCEL_JOB:
            return .cancelJob(jobId: try requiredJobId(try required(e.cancel_job, "CancelJob").job_id, "CancelJob.job_id"))
        case PS__V1__ENVELOPE__BODY_FETCH_MODEL:
            return .fetchModel(jobId: try requiredJobId(try required(e.fetch_model, "FetchModel").job_id, "FetchModel.job_id"))
        case PS__V1__ENVELOPE__BODY_MODEL_DATA:
            let m = try required(e.model_data, "ModelData")
            return .modelData(try TrainedModel(c: try required(m.model, "ModelData.model"), "ModelData.model"))
        case PS__V1__ENVELOPE__BODY_STATUS_REQUEST:
            // "" asks for every job.
            return .statusRequest(jobId: string(try required(e.status_request, "StatusRequest").job_id))
        case PS__V1__ENVELOPE__BODY_STATUS_REPLY:
            return .statusReply(try StatusReply(c: try required(e.status_reply, "StatusReply"), "StatusReply"))
        case PS__V1__ENVELOPE__BODY_LIST_JOBS:
            return .listJobs
        case PS__V1__ENVELOPE__BODY_JOB_LIST:
            let m = try required(e.job_list, "JobList")
            return .jobList(try repeated(m.jobs, m.n_jobs, "JobList.jobs", JobStatus.init(c:_:)))
        case PS__V1__ENVELOPE__BODY_WAIT_JOB:
            return .waitJob(jobId: try requiredJobId(try required(e.wait_job, "WaitJob").job_id, "WaitJob.job_id"))
        case PS__V1__ENVELOPE__BODY_JOB_RESULT:
            return .jobResult(try JobResult(c: try required(e.job_result, "JobResult"), "JobResult"))
        default:
            return nil
        }
    }

    /// Coordinator ⇄ worker training messages; nil for any other body.
    private static func trainingMessage(_ e: Ps__V1__Envelope, tensorView: ReceivedBytes?) throws(WireError) -> Message? {
        switch e.body_case {
        case PS__V1__ENVELOPE__BODY_START_JOB:
            return .startJob(try StartJob(c: try required(e.start_job, "StartJob"), "StartJob"))
        case PS__V1__ENVELOPE__BODY_ASSIGNMENT:
            return .assignment(try Assignment(c: try required(e.assignment, "Assignment"), "Assignment"))
        case PS__V1__ENVELOPE__BODY_EVAL_RESULT:
            return .evalResult(try EvalResult(c: try required(e.eval_result, "EvalResult"), "EvalResult"))
        case PS__V1__ENVELOPE__BODY_PULL_WEIGHTS:
            let m = try required(e.pull_weights, "PullWeights")
            return .pullWeights(PullWeights(
                jobId: try requiredJobId(m.job_id, "PullWeights.job_id"),
                version: try int(m.version, "PullWeights.version"),
                range: try KeyRange(c: try required(m.range, "PullWeights.range"), "PullWeights.range")))
        case PS__V1__ENVELOPE__BODY_WEIGHTS:
            let m = try required(e.weights, "Weights")
            return .weights(Weights(
                jobId: try requiredJobId(m.job_id, "Weights.job_id"),
                version: try int(m.version, "Weights.version"),
                tensor: try TensorSlice(c: try required(m.weights, "Weights.weights"), "Weights.weights", view: tensorView)))
        case PS__V1__ENVELOPE__BODY_PUSH_GRADIENT:
            let m = try required(e.push_gradient, "PushGradient")
            return .pushGradient(PushGradient(
                jobId: try requiredJobId(m.job_id, "PushGradient.job_id"),
                step: try int(m.step, "PushGradient.step"),
                subtree: try ChunkRange(first: m.first_chunk, count: m.chunk_count, "PushGradient"),
                gradient: try TensorSlice(c: try required(m.gradient, "PushGradient.gradient"), "PushGradient.gradient",
                                          view: tensorView),
                lossSum: m.loss_sum,
                correct: try int(m.correct, "PushGradient.correct"),
                samples: try int(m.samples, "PushGradient.samples", min: 1)))
        case PS__V1__ENVELOPE__BODY_PUSH_ACK:
            let m = try required(e.push_ack, "PushAck")
            return .pushAck(PushAck(
                jobId: try requiredJobId(m.job_id, "PushAck.job_id"),
                step: try int(m.step, "PushAck.step"),
                subtree: try ChunkRange(first: m.first_chunk, count: m.chunk_count, "PushAck"),
                duplicate: m.duplicate != 0,
                offset: try int(m.offset, "PushAck.offset")))
        default:
            return nil
        }
    }
}

/// Job ids are opaque but never empty on the messages that act on one job.
func requiredJobId(_ pointer: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
    let id = string(pointer)
    guard !id.isEmpty else { throw WireError(field: field, "missing") }
    return id
}

extension KeyRange {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Ps__V1__KeyRange> {
        let m: UnsafeMutablePointer<Ps__V1__KeyRange> = arena.message(ps__v1__key_range__init)
        m.pointee.offset = uint64(offset, "KeyRange.offset")
        m.pointee.count = uint64(count, "KeyRange.count")
        return m
    }

    init(c: Ps__V1__KeyRange, _ path: String) throws(WireError) {
        let offset = try int(c.offset, "\(path).offset")
        let count = try int(c.count, "\(path).count", min: 1)
        guard !offset.addingReportingOverflow(count).overflow else {
            throw WireError(field: path, "offset \(offset) + count \(count) overflows")
        }
        self.init(offset: offset, count: count)
    }
}

extension TensorSlice {
    /// The Tensor message, its data pointing at `values`' storage for the duration of `body`.
    func withCMessage<R>(_ arena: CArena, _ body: (UnsafeMutablePointer<Ps__V1__Tensor>) -> R) -> R {
        let m: UnsafeMutablePointer<Ps__V1__Tensor> = arena.message(ps__v1__tensor__init)
        m.pointee.offset = uint64(offset, "Tensor.offset")
        return withFloatBytes(data) { data in
            m.pointee.data = data
            return body(m)
        }
    }

    /// `view`: the data field's bytes, when the decoder cut them out of the message protobuf-c saw
    /// (whose data field is then empty) to read them in place.
    init(c: Ps__V1__Tensor, _ path: String, view: ReceivedBytes?) throws(WireError) {
        let offset = try int(c.offset, "\(path).offset")
        let data: FloatData
        if let view {
            precondition(c.data.len == 0, "a tensor read in place was also unpacked")
            guard view.count % MemoryLayout<Float>.size == 0 else {
                throw WireError(field: "\(path).data", "\(view.count) bytes is not a whole number of float32 values")
            }
            data = FloatData(viewing: view)
        } else {
            data = FloatData(try floats(c.data, "\(path).data"))
        }
        guard !offset.addingReportingOverflow(data.count).overflow else {
            throw WireError(field: "\(path).offset", "\(offset) + \(data.count) values overflows")
        }
        self.init(offset: offset, data: data)
    }
}

extension ChunkRange {
    init(first: UInt64, count: UInt64, _ path: String) throws(WireError) {
        let firstChunk = try int(first, "\(path).first_chunk")
        let chunkCount = try int(count, "\(path).chunk_count", min: 1)
        guard !firstChunk.addingReportingOverflow(chunkCount).overflow else {
            throw WireError(field: "\(path).chunk_count", "first_chunk \(firstChunk) + \(chunkCount) overflows")
        }
        self.init(firstChunk: firstChunk, chunkCount: chunkCount)
    }
}

let roleTable = EnumTable<PeerRole, Ps__V1__Role>([
    (.worker, PS__V1__ROLE__ROLE_WORKER),
    (.client, PS__V1__ROLE__ROLE_CLIENT),
    (.server, PS__V1__ROLE__ROLE_SERVER),
])

let errorCodeTable = EnumTable<ErrorCode, Ps__V1__ErrorCode>([
    (.badRequest, PS__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST),
    (.unknownJob, PS__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_JOB),
    (.unknownStep, PS__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_STEP),
    (.notAssigned, PS__V1__ERROR_CODE__ERROR_CODE_NOT_ASSIGNED),
    (.versionMismatch, PS__V1__ERROR_CODE__ERROR_CODE_VERSION_MISMATCH),
    (.tooLarge, PS__V1__ERROR_CODE__ERROR_CODE_TOO_LARGE),
    (.busy, PS__V1__ERROR_CODE__ERROR_CODE_BUSY),
    (.internal, PS__V1__ERROR_CODE__ERROR_CODE_INTERNAL),
    (.unauthenticated, PS__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED),
    (.invalidSpec, PS__V1__ERROR_CODE__ERROR_CODE_INVALID_SPEC),
    (.unknownWorker, PS__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_WORKER),
    (.shuttingDown, PS__V1__ERROR_CODE__ERROR_CODE_SHUTTING_DOWN),
    (.signatureMismatch, PS__V1__ERROR_CODE__ERROR_CODE_SIGNATURE_MISMATCH),
])
