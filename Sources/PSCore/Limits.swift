/// Upper bounds on everything a job spec can ask for, checked when a spec is parsed so that a typo
/// (an extra zero) is rejected at submit time instead of exhausting a server's memory later.
public enum Limits {
    /// Layers per model: deeper dense stacks do not train without tricks this system does not offer.
    public static let layersMax = 64
    /// Units per layer: keeps one layer's weight matrix and activations within a worker's memory.
    public static let unitsMax = 65_536
    /// Features per sample: 1 Mi covers 1024×1024 single-channel images.
    public static let inputsMax = 1 << 20
    /// Parameters per model: 2^28 float32 values are 1 GiB, the most one server process is sized to hold.
    public static let parametersMax = 1 << 28
    /// Samples per batch: bounds the activations a worker keeps for one chunk's backward pass.
    public static let batchSizeMax = 65_536
    /// Chunks per batch: bounds the reduction tree and the per-step bookkeeping on the server.
    public static let chunksMax = 1_024
    /// Epochs per job: far beyond any useful run, but keeps step counters and logs bounded.
    public static let epochsMax = 100_000
    /// Bytes of spec text: a real spec is a few hundred bytes; this stops a wrong file being parsed.
    public static let specBytesMax = 1 << 20
}

extension Limits {
    /// Nodes per spec document: a real spec has about a hundred; this stops YAML aliases that refer to
    /// each other ("billion laughs") from expanding a small text into an enormous tree.
    public static let specNodesMax = 10_000
    /// Nesting levels per spec document: the schema is four levels deep; this keeps the recursive
    /// readers far from the stack limit on hostile input such as a megabyte of `[`.
    public static let specDepthMax = 32
}
