import XCTest
import PSWireC
@testable import PSWire

final class JobSpecWireTests: XCTestCase {
    func testEveryOptimizerLossAndDataVariantRoundTrips() {
        // Proves every field of every JobSpec variant survives wireBytes → init(wireBytes:).
        var count = 0
        for optimizer in OptimizerKind.allCases {
            for loss in LossKind.allCases {
                for variant in 0..<6 {
                    let spec = Fixtures.spec(optimizer: optimizer, loss: loss, variant: variant)
                    XCTAssertEqual(try JobSpec(wireBytes: spec.wireBytes()), spec)
                    count += 1
                }
            }
        }
        XCTAssertEqual(count, OptimizerKind.allCases.count * LossKind.allCases.count * 6)
    }

    func testEveryActivationAndMonitorRoundTrips() {
        // Proves each activation and monitor value has a wire value that maps back to itself.
        for activation in Activation.allCases {
            for monitor in MonitorMetric.allCases {
                var spec = Fixtures.spec()
                spec.model.layers[0].activation = activation
                spec.earlyStopping?.monitor = monitor
                XCTAssertEqual(try JobSpec(wireBytes: spec.wireBytes()), spec)
            }
        }
    }

    func testOnNonFiniteRoundTripsAndAnOldSpecMeansFail() {
        // Proves each non-finite policy has a wire value that maps back to itself; that the default is
        // the wire's zero value, so a spec encoded before the field existed (the field absent) decodes
        // to fail and the default spec's bytes are what they were (checkpoints name them by hash); and
        // that an unknown value is refused naming the field.
        for policy in NonFinitePolicy.allCases {
            var spec = Fixtures.spec()
            spec.training.onNonFinite = policy
            XCTAssertEqual(try JobSpec(wireBytes: spec.wireBytes()), spec)
        }
        var old = Fixtures.spec()
        old.training.onNonFinite = .stop
        let withoutField = edited(old.wireBytes(), unpack: ps__v1__job_spec__unpack, free: ps__v1__job_spec__free_unpacked) { m in
            m.pointee.training.pointee.on_non_finite = Ps__V1__NonFinitePolicy(rawValue: 0)
        }
        XCTAssertEqual(try JobSpec(wireBytes: withoutField).training.onNonFinite, .fail)
        XCTAssertEqual(Fixtures.spec().wireBytes(), withoutField, "fail is not written: older specs' bytes are unchanged")
        let unknown = edited(old.wireBytes(), unpack: ps__v1__job_spec__unpack, free: ps__v1__job_spec__free_unpacked) { m in
            m.pointee.training.pointee.on_non_finite = Ps__V1__NonFinitePolicy(rawValue: 7)
        }
        assertWireError(try JobSpec(wireBytes: unknown), names: "JobSpec.training.on_non_finite: 7")
    }

    func testADefaultSpecCarriesNeitherStalenessNorBackupChunks() {
        // Proves sync with backup chunks on (the default) writes no staleness and no without_backup_chunks:
        // a delayed spec with backup chunks off, edited back to sync with zero staleness and zero
        // without_backup_chunks, has exactly the default spec's bytes, so the bytes of specs written
        // before these fields existed (and checkpoints' spec hashes) are unchanged.
        var other = Fixtures.spec()
        other.training.consistency = .delayed(2)
        other.training.backupChunks = false
        XCTAssertNotEqual(other.wireBytes(), Fixtures.spec().wireBytes())
        let zeroed = edited(other.wireBytes(), unpack: ps__v1__job_spec__unpack, free: ps__v1__job_spec__free_unpacked) { m in
            m.pointee.training.pointee.consistency = PS__V1__CONSISTENCY__CONSISTENCY_SYNC
            m.pointee.training.pointee.staleness = 0
            m.pointee.training.pointee.without_backup_chunks = 0
        }
        XCTAssertEqual(zeroed, Fixtures.spec().wireBytes())
        XCTAssertEqual(try JobSpec(wireBytes: zeroed).training, Fixtures.spec().training)
    }

    func testEveryModeRoundTripsAndAStalenessOutsideItsModeIsRefused() {
        // Proves each mode and staleness survives the wire, and that a peer skipping psctl's checks
        // cannot send a delayed or ssp spec without a staleness or beyond ConsistencyLimits.stalenessMax,
        // nor a staleness with sync or async: each is refused naming training.staleness.
        for consistency in [Consistency.sync, .delayed(1), .delayed(8), .ssp(2), .async] {
            var spec = Fixtures.spec()
            spec.training.consistency = consistency
            spec.training.backupChunks = consistency.mode == .sync
            XCTAssertEqual(try JobSpec(wireBytes: spec.wireBytes()).training.consistency, consistency)
        }
        let cases: [(Ps__V1__Consistency, UInt32, String)] = [
            (PS__V1__CONSISTENCY__CONSISTENCY_DELAYED, 0, "must be between 1 and 8"),
            (PS__V1__CONSISTENCY__CONSISTENCY_SSP, 9, "must be between 1 and 8"),
            (PS__V1__CONSISTENCY__CONSISTENCY_SYNC, 3, "takes none"),
            (PS__V1__CONSISTENCY__CONSISTENCY_ASYNC, 1, "takes none"),
        ]
        for (mode, staleness, why) in cases {
            let bytes = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack, free: ps__v1__job_spec__free_unpacked) { m in
                m.pointee.training.pointee.consistency = mode
                m.pointee.training.pointee.staleness = staleness
            }
            let error = assertWireError(try JobSpec(wireBytes: bytes), names: "JobSpec.training.staleness")
            XCTAssertTrue(error?.description.contains(why) == true, "\(error.map { "\($0)" } ?? "no error")")
        }
    }

    func testSpecRoundTripsInsideSubmitJob() throws {
        // Proves a spec sent in a SubmitJob frame decodes to the same spec.
        let spec = Fixtures.spec(optimizer: .rmsprop, loss: .meanSquaredError, variant: 4)
        let envelope = try Envelope(payload: payload(.submitJob(spec), requestId: 42))
        XCTAssertEqual(envelope, Envelope(requestId: 42, message: .submitJob(spec)))
    }

    func testMalformedComputeSignatureIsRejectedNamingTheField() {
        // Proves a spec whose compute_signature is not a signature is refused on the wire, naming the field.
        let bytes = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                           free: ps__v1__job_spec__free_unpacked) { m in
            m.pointee.training.pointee.compute_signature = strdup("Haswell")
        }
        let error = assertWireError(try JobSpec(wireBytes: bytes), names: "JobSpec.training.compute_signature")
        XCTAssertTrue(error?.message.contains("not a compute signature") ?? false, "\(String(describing: error))")
    }

    func testUnknownActivationIsRejectedNamingTheField() {
        // Proves an activation value outside the schema (99) is an error naming the layer's field.
        let bytes = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                           free: ps__v1__job_spec__free_unpacked) { m in
            m.pointee.model.pointee.layers[1]!.pointee.activation = Ps__V1__Activation(rawValue: 99)
        }
        let error = assertWireError(try JobSpec(wireBytes: bytes), names: "JobSpec.model.layers[1].activation")
        XCTAssertEqual(error?.message, "99 is not a known value")
    }

    func testUnspecifiedEnumsAreRejectedNamingTheField() {
        // Proves an enum left at 0 (UNSPECIFIED) is reported as missing, for loss and optimizer kind.
        let noLoss = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                            free: ps__v1__job_spec__free_unpacked) { $0.pointee.loss = Ps__V1__Loss(rawValue: 0) }
        assertWireError(try JobSpec(wireBytes: noLoss), names: "JobSpec.loss: missing")
        let badKind = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                             free: ps__v1__job_spec__free_unpacked) {
            $0.pointee.optimizer.pointee.kind = Ps__V1__OptimizerKind(rawValue: 1234)
        }
        assertWireError(try JobSpec(wireBytes: badKind), names: "JobSpec.optimizer.kind: 1234")
    }

    func testOutOfRangeNumbersAreRejectedNamingTheField() {
        // Proves zero units, a dropout of 1 and a validation split of 1 are errors naming their fields.
        let zeroUnits = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                               free: ps__v1__job_spec__free_unpacked) {
            $0.pointee.model.pointee.layers[1]!.pointee.units = 0
        }
        let error = assertWireError(try JobSpec(wireBytes: zeroUnits), names: "JobSpec.model.layers[1].units")
        XCTAssertEqual(error?.description, "JobSpec.model.layers[1].units: 0 is out of range")
        let hugeBatch = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                               free: ps__v1__job_spec__free_unpacked) {
            $0.pointee.training.pointee.batch_size = UInt64.max
        }
        assertWireError(try JobSpec(wireBytes: hugeBatch), names: "JobSpec.training.batch_size")
        let fullDropout = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                                 free: ps__v1__job_spec__free_unpacked) {
            $0.pointee.model.pointee.layers[0]!.pointee.dropout = 1
        }
        assertWireError(try JobSpec(wireBytes: fullDropout), names: "JobSpec.model.layers[0].dropout")
        let wholeSplit = edited(Fixtures.spec(variant: 1).wireBytes(), unpack: ps__v1__job_spec__unpack,
                                free: ps__v1__job_spec__free_unpacked) {
            $0.pointee.data.pointee.validation_split = 1
        }
        assertWireError(try JobSpec(wireBytes: wholeSplit), names: "JobSpec.data.validation_split")
    }

    func testMissingSubmessagesAreRejectedNamingTheField() {
        // Proves each required submessage, when absent, is reported by its path.
        let cases: [(String, (UnsafeMutablePointer<Ps__V1__JobSpec>) -> Void)] = [
            ("JobSpec.data: missing", { $0.pointee.data = nil }),
            ("JobSpec.model: missing", { $0.pointee.model = nil }),
            ("JobSpec.optimizer: missing", { $0.pointee.optimizer = nil }),
            ("JobSpec.training: missing", { $0.pointee.training = nil }),
            ("JobSpec.data.train: missing", { $0.pointee.data.pointee.train = nil }),
            ("JobSpec.data.label_column: missing", { $0.pointee.data.pointee.label_column = nil }),
            ("JobSpec.model.layers: missing", { $0.pointee.model.pointee.n_layers = 0 }),
            ("JobSpec.data.preprocessing: missing", {
                $0.pointee.data.pointee.preprocessing_case = PS__V1__DATA_SPEC__PREPROCESSING__NOT_SET
            }),
        ]
        for (expected, edit) in cases {
            let bytes = edited(Fixtures.spec().wireBytes(), unpack: ps__v1__job_spec__unpack,
                               free: ps__v1__job_spec__free_unpacked, edit)
            assertWireError(try JobSpec(wireBytes: bytes), names: expected)
        }
    }

    func testMissingSpecInSubmitJobIsRejected() throws {
        // Proves a SubmitJob without its spec is reported as SubmitJob.spec, not as a crash or a default spec.
        let bytes = edited(try payload(.submitJob(Fixtures.spec())), unpack: ps__v1__envelope__unpack,
                           free: ps__v1__envelope__free_unpacked) { $0.pointee.submit_job.pointee.spec = nil }
        assertWireError(try Envelope(payload: bytes), names: "SubmitJob.spec: missing")
    }
}
