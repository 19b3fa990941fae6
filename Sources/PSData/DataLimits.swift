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
    /// Bytes read or inflated between two looks at the load's cancellation, and the size of one read:
    /// 1 MiB takes about a millisecond to read and a few to inflate, so a stop is prompt.
    public static let pieceBytes = 1 << 20
    /// Bytes a gzip file may inflate past the size its header implies before inflation stops. A file a
    /// little too long still reaches the reader, whose error counts the extra bytes; a gzip bomb stops
    /// within this (plus one piece) of its header's size.
    public static let gzipSlackBytes = 1 << 20
    /// Most a gzip CSV inflates per compressed byte (its size is in no header). Real numeric CSV
    /// compresses 3–10 times (MNIST's: 8.6); deflate reaches 1,032 on repeated text, which is how a
    /// small file becomes gigabytes. Past this (and past `gzipSlackBytes`) inflation stops; such a file
    /// can still be read decompressed, up to `fileBytesMax`.
    public static let gzipTextRatioMax = 64
    /// Most bytes of a file an error message quotes. The file may not be a dataset at all (a key or a
    /// password file named by mistake) and errors travel to logs and to whoever submitted the job: a few
    /// bytes identify a field without disclosing the file.
    public static let quotedBytesMax = 16
}
