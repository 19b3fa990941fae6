import Foundation
import XCTest
@testable import PSCore

/// The start-up check that a binary's CPU has the instructions PSMath was compiled for.
final class BuildTargetTests: XCTestCase {
    private func cpuinfo(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "cpuinfo-\(UUID().uuidString)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testMissingFlagsAreNamed() throws {
        let old = try cpuinfo("processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2\nbogomips\t: 4000\n")
        XCTAssertEqual(BuildTarget.missingCPUFlags(cpuinfo: old), BuildTarget.requiredCPUFlags)
        let new = try cpuinfo("processor\t: 0\nflags\t\t: fpu sse2 popcnt avx avx2 fma bmi1 bmi2 abm movbe f16c aes\n")
        XCTAssertEqual(BuildTarget.missingCPUFlags(cpuinfo: new), [])
        let partial = try cpuinfo("flags\t: sse2 fma\n")
        XCTAssertEqual(BuildTarget.missingCPUFlags(cpuinfo: partial), BuildTarget.requiredCPUFlags.filter { $0 != "fma" })
    }

    func testUnreadableOrFlaglessInfoIsNoObjection() throws {
        XCTAssertEqual(BuildTarget.missingCPUFlags(cpuinfo: "/nonexistent/cpuinfo"), [])
        XCTAssertEqual(BuildTarget.missingCPUFlags(cpuinfo: try cpuinfo("processor\t: 0\n")), [])
    }

    /// This machine runs the tests, so it runs the binaries.
    func testThisMachinePasses() {
        XCTAssertEqual(BuildTarget.missingCPUFlags(), [])
    }
}
