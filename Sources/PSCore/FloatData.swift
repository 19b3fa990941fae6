/// A run of float32 values that is either an owned array or a view of bytes received from the network.
///
/// A decoded gradient or weights message does not copy its megabyte of values out of the frame it
/// arrived in: it keeps the frame's buffer alive and reads the little-endian float32 values where they
/// lie. Whoever needs an aligned array of its own (a worker's parameters) asks for `array`, which is
/// the one copy; whoever only reads them (the server summing pushes) uses `withUnsafeBytes` and pays
/// nothing. A view's bytes are never written: the buffer is kept alive, not shared for writing.
///
/// Views may be unaligned (a frame starts anywhere in a receive buffer), so readers load values with
/// `loadUnaligned`; the math kernels that take raw pointers do.
public struct FloatData: Sendable {
    private enum Storage: Sendable {
        /// An array or part of one (a slice shares the array's storage, copy-on-write).
        case owned(ArraySlice<Float>)
        case received(ReceivedBytes)
    }

    private let storage: Storage

    private init(storage: Storage) {
        self.storage = storage
    }

    /// A part of an array, sharing its storage until either is written (copy-on-write).
    public init(_ values: ArraySlice<Float>) {
        storage = .owned(values)
    }

    public init(_ values: [Float]) {
        storage = .owned(values[...])
    }

    /// A view of `bytes` (whose count is a multiple of 4), kept valid by `bytes`' owner.
    public init(viewing bytes: ReceivedBytes) {
        precondition(bytes.count % MemoryLayout<Float>.size == 0, "\(bytes.count) bytes is not a whole number of float32 values")
        storage = .received(bytes)
    }

    public var count: Int {
        switch storage {
        case let .owned(values): values.count
        case let .received(bytes): bytes.count / MemoryLayout<Float>.size
        }
    }

    /// Whether the values are read in place from a received buffer rather than owned.
    public var isView: Bool {
        if case .received = storage { return true }
        return false
    }

    /// The values' little-endian float32 bytes, valid only inside `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case let .owned(values): try values.withUnsafeBytes(body)
        case let .received(bytes): try body(bytes.bytes)
        }
    }

    /// Copies the values into `array` (resized when its count differs), reusing its storage: a worker's
    /// weights go into the same buffer every step. An owned array is shared rather than copied.
    public func copy(into array: inout [Float]) {
        switch storage {
        case let .owned(values):
            array = Array(values)
        case let .received(bytes):
            if array.count != count { array = [Float](repeating: 0, count: count) }
            array.withUnsafeMutableBytes { out in
                if bytes.count > 0 { out.baseAddress!.copyMemory(from: bytes.bytes.baseAddress!, byteCount: bytes.count) }
            }
        }
    }

    /// Values `range` (indices of this run), sharing this run's storage (an array's, copy-on-write,
    /// or a received buffer's): no copy.
    public func slice(_ range: Range<Int>) -> FloatData {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "slice \(range) outside 0..<\(count)")
        if range == 0..<count { return self }
        switch storage {
        case let .owned(values):
            let start = values.startIndex
            return FloatData(storage: .owned(values[(start + range.lowerBound)..<(start + range.upperBound)]))
        case let .received(bytes):
            let size = MemoryLayout<Float>.size
            let sub = UnsafeRawBufferPointer(rebasing: bytes.bytes[(range.lowerBound * size)..<(range.upperBound * size)])
            return FloatData(viewing: ReceivedBytes(sub, owner: bytes))
        }
    }

    /// The values as an array: free when owned, one copy when a view.
    public var array: [Float] {
        switch storage {
        case let .owned(values):
            return Array(values)
        case let .received(bytes):
            precondition(UInt32(1).littleEndian == 1, "the wire carries little-endian float32; big-endian hosts are not supported")
            let count = self.count
            return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if count > 0 {
                    UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: bytes.bytes.baseAddress!,
                                                                            byteCount: bytes.count)
                }
                initialized = count
            }
        }
    }
}

extension FloatData: Equatable {
    /// Equal when the values are (IEEE `==`, element by element, as for `[Float]`), however stored.
    public static func == (a: FloatData, b: FloatData) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                for i in 0..<a.count {
                    let x = pa.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                    let y = pb.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
                    if x != y { return false }
                }
                return true
            }
        }
    }
}

/// Bytes inside a buffer someone else allocated (a network receive buffer, a frame array), kept alive by
/// holding that buffer's owner. The bytes must not change while an owner is held; the transport
/// guarantees this because the buffers it hands out are copy-on-write and never written in place
/// once shared.
public final class ReceivedBytes: @unchecked Sendable {
    /// Holds the memory alive; never read.
    private let owner: AnyObject
    public let bytes: UnsafeRawBufferPointer

    public init(_ bytes: UnsafeRawBufferPointer, owner: AnyObject) {
        self.bytes = bytes
        self.owner = owner
    }

    /// A copy of `bytes` this object owns: for callers whose memory is valid only for a call.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        let box = OwnedBytes(copying: bytes)
        self.init(box.bytes, owner: box)
    }

    /// A view into an array slice's storage, kept alive by holding the slice.
    public convenience init(_ slice: ArraySlice<UInt8>) {
        let box = SliceOwner(slice)
        self.init(box.bytes, owner: box)
    }

    public var count: Int { bytes.count }
}

/// Heap bytes owned by a class, for `ReceivedBytes(copying:)`.
private final class OwnedBytes {
    private let memory: UnsafeMutableRawBufferPointer
    let bytes: UnsafeRawBufferPointer

    init(copying source: UnsafeRawBufferPointer) {
        memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(source.count, 1), alignment: 16)
        if source.count > 0 { memory.copyMemory(from: source) }
        bytes = UnsafeRawBufferPointer(rebasing: memory[0..<source.count])
    }

    deinit { memory.deallocate() }
}

/// Keeps an array slice (its storage) alive and exposes its bytes. A slice that cannot expose contiguous
/// storage in place (it always can for an array slice) is copied.
private final class SliceOwner {
    let slice: ArraySlice<UInt8>
    let bytes: UnsafeRawBufferPointer

    init(_ slice: ArraySlice<UInt8>) {
        self.slice = slice
        // An array's storage does not move while this object holds the slice and nobody writes
        // through it, so the address taken here stays valid for the object's lifetime.
        bytes = slice.withUnsafeBytes { $0 }
    }
}
