// Helpers shared by every `+Wire.swift` file: building protobuf-c structs in owned memory,
// packing them, unpacking bytes, and checked conversions that throw `WireError` naming the field.
import PSWireC

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns the C memory of one message tree while it is built and packed; everything is freed together
/// when the arena is released, so builders never track individual allocations.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit {
        for block in blocks { block.deallocate() }
    }

    private func allocate(bytes: Int, alignment: Int) -> UnsafeMutableRawPointer {
        let block = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: alignment)
        blocks.append(block)
        return block
    }

    /// A message struct, initialised by its generated `__init` function (descriptor and defaults).
    func message<T>(_ initialize: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let raw = allocate(bytes: MemoryLayout<T>.stride, alignment: MemoryLayout<T>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.stride)
        let typed = raw.assumingMemoryBound(to: T.self)
        initialize(typed)
        return typed
    }

    /// A NUL-terminated copy. protoc-c strings end at the first NUL, so a string holding one is cut there.
    func string(_ value: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = value.utf8CString
        let raw = allocate(bytes: utf8.count, alignment: 1)
        let typed = raw.bindMemory(to: CChar.self, capacity: utf8.count)
        utf8.withUnsafeBufferPointer { typed.initialize(from: $0.baseAddress!, count: utf8.count) }
        return typed
    }

    /// A copy of `values` (nil when empty, as protoc-c expects for an empty repeated field).
    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        if values.isEmpty { return nil }
        let raw = allocate(bytes: MemoryLayout<T>.stride * values.count, alignment: MemoryLayout<T>.alignment)
        let typed = raw.bindMemory(to: T.self, capacity: values.count)
        values.withUnsafeBufferPointer { typed.initialize(from: $0.baseAddress!, count: values.count) }
        return typed
    }

    /// A copy of `bytes` as protobuf-c binary data.
    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        ProtobufCBinaryData(len: bytes.count, data: array(bytes))
    }
}

/// Packs a built message tree of any size (model files are not frames).
func packUnlimited<T>(_ message: UnsafeMutablePointer<T>) -> [UInt8] {
    let base = UnsafeRawPointer(message).assumingMemoryBound(to: ProtobufCMessage.self)
    let size = protobuf_c_message_get_packed_size(base)
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        let written = size == 0 ? 0 : protobuf_c_message_pack(base, buffer.baseAddress!)
        precondition(written == size, "protobuf-c packed \(written) bytes, announced \(size)")
        count = size
    }
}

/// Messages at least this large are packed with `packStreaming`; smaller ones with
/// `protobuf_c_message_pack`, which makes fewer calls per field.
let streamingPackBytesMin = 64 << 10

/// Packs `message` into `out` (at least its packed size) copying each byte exactly once.
///
/// `protobuf_c_message_pack` writes a submessage before it knows how many bytes the submessage's
/// length prefix takes, then shifts the submessage with `memmove` to make room: a tensor nested in
/// Envelope → PushGradient → Tensor was copied three times (encode ran at a third of memcpy's
/// speed). `protobuf_c_message_pack_to_buffer` sizes each submessage first and hands every piece to
/// an append callback, so the tensor bytes go from the Swift array to `out` in one `memcpy`.
func packStreaming(_ message: UnsafePointer<ProtobufCMessage>, into out: UnsafeMutablePointer<UInt8>, capacity: Int) -> Int {
    // A raw block laid out as [ProtobufCBuffer][cursor][end], so the C callback (which cannot capture
    // context) finds the write position next to the buffer struct protobuf-c passes back to it.
    let block = UnsafeMutableRawPointer.allocate(byteCount: streamCursorOffset + 2 * MemoryLayout<UnsafeMutablePointer<UInt8>>.stride,
                                                 alignment: 16)
    defer { block.deallocate() }
    block.initializeMemory(as: ProtobufCBuffer.self, repeating: ProtobufCBuffer(append: streamAppend), count: 1)
    block.storeBytes(of: out, toByteOffset: streamCursorOffset, as: UnsafeMutablePointer<UInt8>.self)
    block.storeBytes(of: out + capacity, toByteOffset: streamCursorOffset + MemoryLayout<UnsafeMutablePointer<UInt8>>.stride,
                     as: UnsafeMutablePointer<UInt8>.self)
    return protobuf_c_message_pack_to_buffer(message, block.assumingMemoryBound(to: ProtobufCBuffer.self))
}

/// Where `packStreaming`'s cursor sits in its block: after the ProtobufCBuffer, pointer-aligned.
private let streamCursorOffset: Int = {
    let align = MemoryLayout<UnsafeMutablePointer<UInt8>>.alignment
    return (MemoryLayout<ProtobufCBuffer>.size + align - 1) / align * align
}()

private func streamAppend(_ buffer: UnsafeMutablePointer<ProtobufCBuffer>?, _ count: Int, _ data: UnsafePointer<UInt8>?) {
    guard count > 0, let buffer, let data else { return }
    let block = UnsafeMutableRawPointer(buffer)
    let cursor = block.load(fromByteOffset: streamCursorOffset, as: UnsafeMutablePointer<UInt8>.self)
    let end = block.load(fromByteOffset: streamCursorOffset + MemoryLayout<UnsafeMutablePointer<UInt8>>.stride,
                         as: UnsafeMutablePointer<UInt8>.self)
    precondition(end - cursor >= count, "protobuf-c appended past the announced packed size")
    cursor.update(from: data, count: count)
    block.storeBytes(of: cursor + count, toByteOffset: streamCursorOffset, as: UnsafeMutablePointer<UInt8>.self)
}

/// Runs `body` with `values` as little-endian float32 binary data pointing at the array's own
/// storage, so encoding a tensor copies it once: straight into the output buffer.
func withFloatBytes<R>(_ values: [Float], _ body: (ProtobufCBinaryData) -> R) -> R {
    withFloatBytes(FloatData(values), body)
}

func withFloatBytes<R>(_ values: FloatData, _ body: (ProtobufCBinaryData) -> R) -> R {
    precondition(UInt32(1).littleEndian == 1, "the wire carries little-endian float32; big-endian hosts are not supported")
    return values.withUnsafeBytes { raw in
        let data = UnsafeMutablePointer(mutating: raw.baseAddress?.assumingMemoryBound(to: UInt8.self))
        return body(ProtobufCBinaryData(len: raw.count, data: data))
    }
}

/// Unpacks `bytes` with a generated `__unpack` function, without copying when the collection is
/// contiguous. nil when protobuf-c rejects the bytes.
func unpack<T>(_ bytes: some Collection<UInt8>,
               _ unpacker: (Int, UnsafePointer<UInt8>) -> UnsafeMutablePointer<T>?) -> UnsafeMutablePointer<T>? {
    if let result = bytes.withContiguousStorageIfAvailable({ unpack(UnsafeRawBufferPointer($0), unpacker) }) {
        return result
    }
    return Array(bytes).withUnsafeBytes { unpack($0, unpacker) }
}

/// Unpacks bytes in place with a generated `__unpack` function. nil when protobuf-c rejects them.
func unpack<T>(_ bytes: UnsafeRawBufferPointer,
               _ unpacker: (Int, UnsafePointer<UInt8>) -> UnsafeMutablePointer<T>?) -> UnsafeMutablePointer<T>? {
    guard let base = bytes.baseAddress else {
        // An empty message is valid protobuf; give protobuf-c a real pointer to read nothing from.
        var nothing: UInt8 = 0
        return unpacker(0, &nothing)
    }
    return unpacker(bytes.count, base.assumingMemoryBound(to: UInt8.self))
}

// MARK: - Checked conversions for decoding

/// A required submessage: protoc-c leaves absent message fields NULL.
func required<T>(_ pointer: UnsafeMutablePointer<T>?, _ field: String) throws(WireError) -> T {
    guard let pointer else { throw WireError(field: field, "missing") }
    return pointer.pointee
}

func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
    guard let pointer else { return "" }
    // Decoding repairs invalid UTF-8 rather than failing: names and paths are shown, not trusted.
    return String(decoding: UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)), as: UTF8.self)
}

func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
    guard data.len > 0, let base = data.data else { return [] }
    return Array(UnsafeBufferPointer(start: base, count: data.len))
}

/// A count or index that must fit `Int` and be at least `min`.
func int(_ value: UInt64, _ field: String, min: Int = 0) throws(WireError) -> Int {
    guard value <= UInt64(Int.max), Int(value) >= min else {
        throw WireError(field: field, "\(value) is out of range")
    }
    return Int(value)
}

func int(_ value: UInt32, _ field: String, min: Int = 0) throws(WireError) -> Int {
    try int(UInt64(value), field, min: min)
}

/// The reverse of `int(_:_:min:)`: a negative count is a broken invariant of the caller.
func uint64(_ value: Int, _ what: @autoclosure () -> String) -> UInt64 {
    precondition(value >= 0, "\(what()) is negative (\(value)); only validated values are encoded")
    return UInt64(value)
}

func uint32(_ value: Int, _ what: @autoclosure () -> String) -> UInt32 {
    precondition(value >= 0 && value <= Int(UInt32.max), "\(what()) (\(value)) does not fit uint32")
    return UInt32(value)
}

/// Little-endian float32 bytes as `[Float]`, with one copy.
func floats(_ data: ProtobufCBinaryData, _ field: String) throws(WireError) -> [Float] {
    precondition(UInt32(1).littleEndian == 1, "the wire carries little-endian float32; big-endian hosts are not supported")
    guard data.len % MemoryLayout<Float>.size == 0 else {
        throw WireError(field: field, "\(data.len) bytes is not a whole number of float32 values")
    }
    let count = data.len / MemoryLayout<Float>.size
    guard count > 0, let source = data.data else { return [] }
    return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: source, byteCount: data.len)
        initialized = count
    }
}

/// A Swift enum ⇄ generated C enum mapping. Value 0 is every wire enum's UNSPECIFIED and never in a table.
/// Unchecked Sendable: the tables are immutable, and imported C enums (plain integers) are simply not
/// marked Sendable by the importer.
struct EnumTable<Swift: Equatable, C: RawRepresentable & Equatable>: @unchecked Sendable where C.RawValue: BinaryInteger {
    let pairs: [(Swift, C)]

    init(_ pairs: [(Swift, C)]) { self.pairs = pairs }

    func c(_ value: Swift) -> C {
        guard let pair = pairs.first(where: { $0.0 == value }) else {
            preconditionFailure("\(value) has no wire value; add it to the schema and its EnumTable")
        }
        return pair.1
    }

    func swift(_ value: C, _ field: String) throws(WireError) -> Swift {
        if let pair = pairs.first(where: { $0.1 == value }) { return pair.0 }
        if value.rawValue == 0 { throw WireError(field: field, "missing (0 is unspecified)") }
        throw WireError(field: field, "\(value.rawValue) is not a known value")
    }
}

/// The elements of a repeated message field (`count` pointers), each decoded by `element` with its
/// indexed path (`StatusReply.jobs[2]`). A NULL element is reported as missing.
func repeated<C, T>(_ pointers: UnsafeMutablePointer<UnsafeMutablePointer<C>?>?, _ count: Int, _ path: String,
                    _ element: (C, String) throws(WireError) -> T) throws(WireError) -> [T] {
    guard count > 0 else { return [] }
    guard let pointers else { throw WireError(field: path, "\(count) elements but no array") }
    var values: [T] = []
    values.reserveCapacity(count)
    for i in 0..<count {
        let p = "\(path)[\(i)]"
        values.append(try element(try required(pointers[i], p), p))
    }
    return values
}

/// The reverse of `repeated`: one message per element, as the pointer array protobuf-c packs.
func repeatedMessages<C>(_ arena: CArena, _ values: [UnsafeMutablePointer<C>]) -> UnsafeMutablePointer<UnsafeMutablePointer<C>?>? {
    arena.array(values.map { Optional($0) })
}

/// A duration, rate or other quantity that is never negative (NaN is rejected too; +infinity passes,
/// since a rate over an empty interval is one).
func nonNegative(_ value: Double, _ field: String) throws(WireError) -> Double {
    guard value >= 0 else { throw WireError(field: field, "\(value) is out of range (non-negative)") }
    return value
}

/// A fraction such as an accuracy, in [0, 1].
func fraction(_ value: Double, _ field: String) throws(WireError) -> Double {
    guard value >= 0, value <= 1 else { throw WireError(field: field, "\(value) is out of range [0, 1]") }
    return value
}
