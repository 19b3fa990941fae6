/// Upper bounds on everything a job spec can ask for, checked when a spec is parsed so that a typo
/// (an extra zero) is rejected at submit time instead of exhausting a server's memory later.
public enum Limits {
    /// Layers per model: deeper dense stacks do not train without tricks this system does not offer.
    public static let layersMax = 64
    /// Units per layer: keeps one layer's weight matrix and activations within a worker's memory.
    public static let unitsMax = 65_536
    /// Features per sample: 1 Mi covers 1024×1024 single-channel images.
    public static let inputsMax = 1 << 20
    /// Parameters per model: as many float32 values as fit in one frame (`frameBytesMax`) beside the
    /// most everything else in a `ModelData` may take (`frameReserveBytes`), so a model that passes
    /// validation can always be sent whole: a full-range `Weights`, a worker's whole-vector push and
    /// the model file are each one frame. 14.4 M parameters, 60× the example model.
    public static let parametersMax = (frameBytesMax - frameReserveBytes) / MemoryLayout<Float>.size
    /// Samples per batch: bounds the activations a worker keeps for one chunk's backward pass.
    public static let batchSizeMax = 65_536
    /// Chunks per batch: bounds the reduction tree and the per-step bookkeeping on the server.
    public static let chunksMax = 1_024
    /// Epochs per job: far beyond any useful run, but keeps step counters and logs bounded.
    public static let epochsMax = 100_000
    /// Checkpoints kept per job (`checkpoint.keep`): each holds the parameters and optimizer state.
    public static let checkpointsKeptMax = 100
    /// Seconds between time-triggered checkpoints (`checkpoint.every_seconds`): one week.
    public static let checkpointSecondsMax = 7 * 86_400.0
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

extension Limits {
    /// Largest frame payload (the envelope, without its 4-byte length) sent or accepted. The largest
    /// messages carry a whole parameter vector (`ModelData`, a full-range `Weights`); 64 MiB bounds what
    /// one peer can make a server buffer before the length is even checked.
    public static let frameBytesMax = 64 << 20

    /// What a message carrying the whole parameter vector may need beside it at the other limits:
    /// the spec (its strings come from at most `specBytesMax` of text; the numbers are a few KiB),
    /// a standardization's mean and standard deviation (`2 × inputsMax` float32), layer sizes, the
    /// training report, the tensor's offset and the envelope's own fields (64 KiB covers them).
    public static let frameReserveBytes = specBytesMax + 2 * inputsMax * MemoryLayout<Float>.size + (64 << 10)
}
