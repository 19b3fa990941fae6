import XCTest
import PSWireC
@testable import PSWire

final class ONNXWireTests: XCTestCase {
    func testStandardizedClassifierExportsTheExpectedGraph() throws {
        // Proves the bytes parse back with protoc-c's generated reader into IR 7, opset 13, and the
        // graph Sub, Div, then Gemm+activation per layer, ending in Softmax(axis=1) named "output".
        let model = Fixtures.model()
        let g = try decoded(model.onnxModelBytes())
        XCTAssertEqual(g.irVersion, 7)
        XCTAssertEqual(g.opsets, ["": 13])
        XCTAssertEqual(g.producer, "ps-cluster")
        XCTAssertEqual(g.name, model.spec.name)
        XCTAssertEqual(g.nodes.map(\.op), ["Sub", "Div", "Gemm", "Relu", "Gemm", "Tanh", "Gemm", "Softmax"])
        XCTAssertEqual(g.nodes.map(\.inputs), [
            ["input", "preprocess.mean"], ["preprocess/Sub", "preprocess.std"],
            ["preprocess/Div", "layer0.weight", "layer0.bias"], ["layer0/Gemm"],
            ["layer0/Relu", "layer1.weight", "layer1.bias"], ["layer1/Gemm"],
            ["layer1/Tanh", "layer2.weight", "layer2.bias"], ["layer2/Gemm"],
        ])
        XCTAssertEqual(g.nodes.last?.outputs, ["output"])
        for gemm in g.nodes where gemm.op == "Gemm" {
            XCTAssertEqual(gemm.attributes, ["transB": 1], gemm.name)
        }
        XCTAssertEqual(g.nodes.last?.attributes, ["axis": 1])
        XCTAssertEqual(g.input, Value(name: "input", elemType: 1, dims: ["batch", "4"]))
        XCTAssertEqual(g.output, Value(name: "output", elemType: 1, dims: ["batch", "3"]))
    }

    func testInitializersHoldTheParametersInLayoutOrder() throws {
        // Proves every initializer is float32 raw_data with the layer's dims, and that the weights
        // and biases concatenated in layer order are the model's parameter vector bit for bit.
        let model = Fixtures.model()
        let g = try decoded(model.onnxModelBytes())
        XCTAssertEqual(g.initializers.map(\.name), ["preprocess.mean", "preprocess.std",
                                                    "layer0.weight", "layer0.bias", "layer1.weight", "layer1.bias",
                                                    "layer2.weight", "layer2.bias"])
        XCTAssertEqual(g.initializers.map(\.dims), [[4], [4], [8, 4], [8], [5, 8], [5], [3, 5], [3]])
        XCTAssertTrue(g.initializers.allSatisfy { $0.dataType == 1 && $0.usedRawData })
        XCTAssertEqual(g.initializers[0].values, [0.5, -1, 2e-3, 7])
        XCTAssertEqual(g.initializers[1].values, [1, 0.25, 3, 1])
        let parameters = g.initializers.dropFirst(2).flatMap(\.values)
        XCTAssertEqual(parameters.map(\.bitPattern), model.parameters.map(\.bitPattern))
    }

    func testScaleAndNoPreprocessingAndLinearOutput() throws {
        // Proves a scale transform is one Div by a scalar, no transform adds no node, and a linear
        // output layer ends in its Gemm (no activation node), which is then the graph output.
        let scaled = try decoded(Fixtures.model(preprocessing: .scale(divisor: 255)).onnxModelBytes())
        XCTAssertEqual(scaled.nodes.first?.op, "Div")
        XCTAssertEqual(scaled.nodes.first?.inputs, ["input", "preprocess.divisor"])
        XCTAssertEqual(scaled.initializers.first?.dims, [])
        XCTAssertEqual(scaled.initializers.first?.values, [255])

        var model = Fixtures.model(preprocessing: FittedPreprocessing.none)
        model.spec.loss = .meanSquaredError
        model.spec.model.layers[2].activation = .linear
        let g = try decoded(model.onnxModelBytes())
        XCTAssertEqual(g.nodes.map(\.op), ["Gemm", "Relu", "Gemm", "Tanh", "Gemm"])
        XCTAssertEqual(g.nodes.first?.inputs.first, "input")
        XCTAssertEqual(g.nodes.last?.outputs, ["output"])
    }

    func testBinaryClassifierEndsInSigmoid() throws {
        // Proves a binary cross-entropy model (one sigmoid unit) outputs the probability via Sigmoid.
        var model = Fixtures.model(preprocessing: .scale(divisor: 2))
        model.spec.loss = .binaryCrossEntropy
        model.spec.model.layers[2].units = 1
        model.spec.model.layers[2].activation = .sigmoid
        model.parameters.removeLast(2 * 5 + 2)
        let g = try decoded(model.onnxModelBytes())
        XCTAssertEqual(g.nodes.map(\.op), ["Div", "Gemm", "Relu", "Gemm", "Tanh", "Gemm", "Sigmoid"])
        XCTAssertEqual(g.output, Value(name: "output", elemType: 1, dims: ["batch", "1"]))
    }

    // MARK: - Reading the bytes back with the generated code

    struct Node {
        var name: String
        var op: String
        var inputs: [String]
        var outputs: [String]
        var attributes: [String: Int64]
    }

    struct Tensor {
        var name: String
        var dims: [Int64]
        var dataType: Int32
        var usedRawData: Bool
        var values: [Float]
    }

    struct Value: Equatable {
        var name: String
        var elemType: Int32
        /// dim_value as a number, dim_param as its name.
        var dims: [String]
    }

    struct Graph {
        var irVersion: Int64
        var opsets: [String: Int64]
        var producer: String
        var name: String
        var nodes: [Node]
        var initializers: [Tensor]
        var input: Value
        var output: Value
    }

    func decoded(_ bytes: [UInt8]) throws -> Graph {
        let message = try XCTUnwrap(bytes.withUnsafeBufferPointer { onnx__model_proto__unpack(nil, $0.count, $0.baseAddress) },
                                    "protoc-c rejects the exported bytes")
        defer { onnx__model_proto__free_unpacked(message, nil) }
        let m = message.pointee
        XCTAssertEqual(m.has_ir_version, 1)
        let g = try XCTUnwrap(m.graph).pointee
        XCTAssertEqual(g.n_input, 1)
        XCTAssertEqual(g.n_output, 1)
        return Graph(
            irVersion: m.ir_version,
            opsets: Dictionary(uniqueKeysWithValues: list(m.opset_import, m.n_opset_import).map { (text($0.domain), $0.version) }),
            producer: text(m.producer_name),
            name: text(g.name),
            nodes: list(g.node, g.n_node).map { n in
                Node(name: text(n.name), op: text(n.op_type),
                     inputs: (0..<n.n_input).map { text(n.input[$0]) },
                     outputs: (0..<n.n_output).map { text(n.output[$0]) },
                     attributes: Dictionary(uniqueKeysWithValues: list(n.attribute, n.n_attribute).map { a in
                         XCTAssertEqual(a.type, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT)
                         return (text(a.name), a.i)
                     }))
            },
            initializers: list(g.initializer, g.n_initializer).map { t in
                var values = [Float](repeating: 0, count: t.raw_data.len / 4)
                if t.raw_data.len > 0 {
                    values.withUnsafeMutableBytes { $0.copyMemory(from: UnsafeRawBufferPointer(start: t.raw_data.data, count: t.raw_data.len)) }
                }
                return Tensor(name: text(t.name), dims: Array(UnsafeBufferPointer(start: t.dims, count: t.n_dims)),
                              dataType: t.data_type, usedRawData: t.has_raw_data != 0 && t.n_float_data == 0, values: values)
            },
            input: value(g.input[0]!.pointee),
            output: value(g.output[0]!.pointee))
    }

    func value(_ v: Onnx__ValueInfoProto) -> Value {
        let type = v.type!.pointee
        XCTAssertEqual(type.value_case, ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        let tensor = type.tensor_type!.pointee
        let dims = list(tensor.shape!.pointee.dim, tensor.shape!.pointee.n_dim).map { d in
            d.value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? text(d.dim_param) : "\(d.dim_value)"
        }
        return Value(name: text(v.name), elemType: tensor.elem_type, dims: dims)
    }

    func list<C>(_ pointers: UnsafeMutablePointer<UnsafeMutablePointer<C>?>?, _ count: Int) -> [C] {
        (0..<count).map { pointers![$0]!.pointee }
    }

    func text(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }
}
