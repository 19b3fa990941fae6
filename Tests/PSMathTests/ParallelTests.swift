import Foundation
import XCTest
@testable import PSMath

/// The blocks an element-wise pass is split into cover every element exactly once.
final class ParallelTests: XCTestCase {
    func testBlocksCoverTheVectorOnce() {
        for n in [0, 1, 7, 262_143, 524_288, 800_003, 2_000_000] {
            for parts in [1, 2, 3, 4, 16] {
                let hits = UnsafeMutablePointer<UInt8>.allocate(capacity: max(n, 1))
                hits.initialize(repeating: 0, count: max(n, 1))
                defer { hits.deallocate() }
                let address = Int(bitPattern: hits)
                let blocks = Counter()
                Parallel.blocks(n, parts: parts) { offset, count in
                    blocks.add()
                    let p = UnsafeMutablePointer<UInt8>(bitPattern: address)!
                    for i in offset..<(offset + count) { p[i] &+= 1 }
                }
                XCTAssertTrue(UnsafeBufferPointer(start: hits, count: n).allSatisfy { $0 == 1 }, "n \(n), parts \(parts)")
                XCTAssertLessThanOrEqual(blocks.value, max(1, min(parts, n / Parallel.elementsPerPartMin)))
            }
        }
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
