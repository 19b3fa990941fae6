/// Upper bounds checked at the edge, before anything is allocated from a size that a file declares.
public enum DataLimits {
    /// Largest file, or decompressed gzip stream, read into memory: 4 GiB is far beyond any dataset a
    /// dense network here trains on, so a larger one is a mistake (or a gzip bomb), not data.
    public static let fileBytesMax = 4 << 30
    /// Most features per sample: an input layer wider than this would not fit a useful weight matrix.
    public static let featuresMax = 1 << 20
    /// Most samples in one split: sample indices travel as Int32 and count Philox's 32-bit counter.
    public static let samplesMax = Int(Int32.max)
    /// Most feature values (samples × features) in one split: 1 Gi floats is 4 GiB of memory.
    public static let valuesMax = 1 << 30
}
