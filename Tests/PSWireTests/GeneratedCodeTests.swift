import Foundation
import XCTest

final class GeneratedCodeTests: XCTestCase {
    func testCommittedGeneratedCodeMatchesTheSchema() throws {
        // Proves `scripts/gen-proto.sh --check` passes: Sources/PSWireC is exactly what proto/ generates.
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = root.appendingPathComponent("scripts/gen-proto.sh")
        process.arguments = ["--check"]
        process.currentDirectoryURL = root
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, text)
    }
}
