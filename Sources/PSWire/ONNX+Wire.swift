// TrainedModel → ONNX: the model as an `onnx.ModelProto` (proto/onnx/onnx.proto, a subset of ONNX's
// own schema), so that any ONNX runtime can run it without this project.
import PSCore
import PSWireC

/// The fixed facts of every exported graph; readers (tests, scripts, users) rely on them.
public enum ONNXExport {
    /// IR version 7 (ONNX 1.7): old enough for every current runtime, new enough for opset 13.
    public static let irVersion: Int64 = 7
    /// Opset 13 of the default domain: Gemm with a broadcast bias, Softmax over one axis.
    public static let opsetVersion: Int64 = 13
    public static let producerName = "ps-cluster"
    /// The graph input: RAW features `[batch × inputs]` float32 (the model's preprocessing is in the graph).
    public static let inputName = "input"
    /// The graph output `[batch × outputs]`: probabilities for a softmax or sigmoid output, else the
    /// output layer's values.
    public static let outputName = "output"
    /// The symbolic first dimension of the input and output.
    public static let batchDimension = "batch"
}

extension TrainedModel {
    /// The model as a serialized ONNX `ModelProto` (IR 7, opset 13). The graph is: the fitted
    /// preprocessing (Div by the scale divisor, or Sub mean then Div std), then per layer
    /// Gemm(x, W, b, transB=1) and the activation (Relu, Sigmoid, Tanh, Softmax(axis=1); nothing for
    /// linear). Weights and statistics are initializers stored as little-endian float32 `raw_data`.
    public func onnxModelBytes() -> [UInt8] {
        let graph = ONNXGraph(self)
        let arena = CArena()
        return withExtendedLifetime(arena) { packUnlimited(graph.cMessage(arena)) }
    }
}

/// The graph in Swift values, before any C struct exists: nodes in execution order and their constants.
struct ONNXGraph {
    struct Node {
        var name: String
        var op: String
        var inputs: [String]
        var output: String
        /// INT attributes (the only kind these operators need): transB, axis.
        var attributes: [(String, Int64)] = []
    }

    struct Initializer {
        var name: String
        /// `[]` for a scalar.
        var dims: [Int]
        var values: [Float]
    }

    var name: String
    var inputs: Int
    var outputs: Int
    var nodes: [Node] = []
    var initializers: [Initializer] = []

    init(_ model: TrainedModel) {
        let spec = model.spec.model
        name = model.spec.name
        inputs = spec.inputs
        outputs = spec.outputs
        // Each node reads the previous node's output; the last one's is renamed to the graph output.
        var current = ONNXExport.inputName
        func add(_ name: String, _ op: String, _ operands: [String], _ attributes: [(String, Int64)] = []) {
            nodes.append(Node(name: name, op: op, inputs: [current] + operands, output: name, attributes: attributes))
            current = name
        }

        switch model.preprocessing {
        case .none:
            break
        case let .scale(divisor):
            initializers.append(Initializer(name: "preprocess.divisor", dims: [], values: [divisor]))
            add("preprocess/Div", "Div", ["preprocess.divisor"])
        case let .standardize(mean, std):
            precondition(mean.count == inputs && std.count == inputs, "statistics width mismatch")
            initializers.append(Initializer(name: "preprocess.mean", dims: [inputs], values: mean))
            initializers.append(Initializer(name: "preprocess.std", dims: [inputs], values: std))
            add("preprocess/Sub", "Sub", ["preprocess.mean"])
            add("preprocess/Div", "Div", ["preprocess.std"])
        }

        // The flat vector's layout (see TrainedModel.parameters): per layer W[units × fanIn] row-major,
        // then b[units]. Gemm with transB=1 computes x[N × fanIn] · Wᵀ + b, exactly the layer.
        var offset = 0
        var fanIn = inputs
        for (l, layer) in spec.layers.enumerated() {
            let weights = "layer\(l).weight", bias = "layer\(l).bias"
            let weightCount = layer.units * fanIn
            precondition(offset + weightCount + layer.units <= model.parameters.count, "parameters shorter than the layout")
            initializers.append(Initializer(name: weights, dims: [layer.units, fanIn],
                                            values: Array(model.parameters[offset..<(offset + weightCount)])))
            offset += weightCount
            initializers.append(Initializer(name: bias, dims: [layer.units],
                                            values: Array(model.parameters[offset..<(offset + layer.units)])))
            offset += layer.units
            add("layer\(l)/Gemm", "Gemm", [weights, bias], [("transB", 1)])
            switch layer.activation {
            case .relu: add("layer\(l)/Relu", "Relu", [])
            case .sigmoid: add("layer\(l)/Sigmoid", "Sigmoid", [])
            case .tanh: add("layer\(l)/Tanh", "Tanh", [])
            case .softmax: add("layer\(l)/Softmax", "Softmax", [], [("axis", 1)])
            case .linear: break
            }
            fanIn = layer.units
        }
        precondition(offset == model.parameters.count, "\(model.parameters.count) parameters for a layout of \(offset)")
        nodes[nodes.count - 1].output = ONNXExport.outputName
    }

    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Onnx__ModelProto> {
        let m: UnsafeMutablePointer<Onnx__ModelProto> = arena.message(onnx__model_proto__init)
        m.pointee.has_ir_version = 1
        m.pointee.ir_version = ONNXExport.irVersion
        m.pointee.producer_name = arena.string(ONNXExport.producerName)
        let opset: UnsafeMutablePointer<Onnx__OperatorSetIdProto> = arena.message(onnx__operator_set_id_proto__init)
        opset.pointee.domain = arena.string("")
        opset.pointee.has_version = 1
        opset.pointee.version = ONNXExport.opsetVersion
        m.pointee.n_opset_import = 1
        m.pointee.opset_import = repeatedMessages(arena, [opset])

        let g: UnsafeMutablePointer<Onnx__GraphProto> = arena.message(onnx__graph_proto__init)
        g.pointee.name = arena.string(name)
        g.pointee.n_node = nodes.count
        g.pointee.node = repeatedMessages(arena, nodes.map { $0.cMessage(arena) })
        g.pointee.n_initializer = initializers.count
        g.pointee.initializer = repeatedMessages(arena, initializers.map { $0.cMessage(arena) })
        g.pointee.n_input = 1
        g.pointee.input = repeatedMessages(arena, [Self.valueInfo(arena, ONNXExport.inputName, width: inputs)])
        g.pointee.n_output = 1
        g.pointee.output = repeatedMessages(arena, [Self.valueInfo(arena, ONNXExport.outputName, width: outputs)])
        m.pointee.graph = g
        return m
    }

    /// A float tensor value `[batch × width]`.
    static func valueInfo(_ arena: CArena, _ name: String, width: Int) -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
        let batch: UnsafeMutablePointer<Onnx__TensorShapeProto__Dimension> = arena.message(onnx__tensor_shape_proto__dimension__init)
        batch.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
        batch.pointee.dim_param = arena.string(ONNXExport.batchDimension)
        let features: UnsafeMutablePointer<Onnx__TensorShapeProto__Dimension> = arena.message(onnx__tensor_shape_proto__dimension__init)
        features.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
        features.pointee.dim_value = Int64(width)
        let shape: UnsafeMutablePointer<Onnx__TensorShapeProto> = arena.message(onnx__tensor_shape_proto__init)
        shape.pointee.n_dim = 2
        shape.pointee.dim = repeatedMessages(arena, [batch, features])
        let tensor: UnsafeMutablePointer<Onnx__TypeProto__Tensor> = arena.message(onnx__type_proto__tensor__init)
        tensor.pointee.has_elem_type = 1
        tensor.pointee.elem_type = Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue)
        tensor.pointee.shape = shape
        let type: UnsafeMutablePointer<Onnx__TypeProto> = arena.message(onnx__type_proto__init)
        type.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
        type.pointee.tensor_type = tensor
        let v: UnsafeMutablePointer<Onnx__ValueInfoProto> = arena.message(onnx__value_info_proto__init)
        v.pointee.name = arena.string(name)
        v.pointee.type = type
        return v
    }
}

extension ONNXGraph.Node {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Onnx__NodeProto> {
        let n: UnsafeMutablePointer<Onnx__NodeProto> = arena.message(onnx__node_proto__init)
        n.pointee.name = arena.string(name)
        n.pointee.op_type = arena.string(op)
        n.pointee.n_input = inputs.count
        n.pointee.input = arena.array(inputs.map { Optional(arena.string($0)) })
        n.pointee.n_output = 1
        n.pointee.output = arena.array([Optional(arena.string(output))])
        n.pointee.n_attribute = attributes.count
        n.pointee.attribute = repeatedMessages(arena, attributes.map { name, value in
            let a: UnsafeMutablePointer<Onnx__AttributeProto> = arena.message(onnx__attribute_proto__init)
            a.pointee.name = arena.string(name)
            a.pointee.has_type = 1
            a.pointee.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT
            a.pointee.has_i = 1
            a.pointee.i = value
            return a
        })
        return n
    }
}

extension ONNXGraph.Initializer {
    func cMessage(_ arena: CArena) -> UnsafeMutablePointer<Onnx__TensorProto> {
        precondition(UInt32(1).littleEndian == 1, "ONNX raw_data is little-endian; big-endian hosts are not supported")
        precondition(dims.reduce(1, *) == values.count, "\(name): \(values.count) values for dims \(dims)")
        let t: UnsafeMutablePointer<Onnx__TensorProto> = arena.message(onnx__tensor_proto__init)
        t.pointee.name = arena.string(name)
        t.pointee.n_dims = dims.count
        t.pointee.dims = arena.array(dims.map { Int64($0) })
        t.pointee.has_data_type = 1
        t.pointee.data_type = Int32(ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT.rawValue)
        // One copy, straight into the arena; the packer copies it once more into the output.
        let floats = arena.array(values)
        t.pointee.has_raw_data = 1
        t.pointee.raw_data = ProtobufCBinaryData(
            len: values.count * MemoryLayout<Float>.size,
            data: floats.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: UInt8.self) })
        return t
    }
}
