#if canImport(Glibc)
import CMalloc
#endif

/// Process-wide allocator settings for moving megabyte tensors.
public enum MemoryTuning {
    /// glibc serves allocations above 128 KiB with a fresh mmap and returns them with munmap, so every
    /// decoded weights or gradient message (≈1 MB for the example model) paid for a thousand page
    /// faults: decoding ran at 0.75 GB/s. Keeping such buffers in the heap (mmap only above 64 MiB,
    /// trim only beyond 256 MiB free) makes it 17 GB/s (`ps-bench wire`). Call once at start-up.
    public static func keepLargeBuffers() {
        #if canImport(Glibc)
        _ = mallopt(M_MMAP_THRESHOLD, 64 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 256 << 20)
        #endif
    }
}
