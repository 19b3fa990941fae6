import Foundation
import XCTest

/// `promtool check metrics`: Prometheus's own parser and linter for an exposition page.
public enum Promtool {
    public static let path = "/usr/bin/promtool"

    /// Fails the test when promtool reports any problem (or is not installed).
    public static func check(_ page: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            XCTFail("\(path) is missing; install it with scripts/install-deps.sh --test", file: file, line: line)
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(page.utf8))
        try input.fileHandleForWriting.close()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "promtool check metrics:\n\(report)\npage:\n\(page)", file: file, line: line)
        XCTAssertEqual(report.trimmingCharacters(in: .whitespacesAndNewlines), "", "promtool check metrics", file: file, line: line)
    }
}
