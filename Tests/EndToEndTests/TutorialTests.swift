import Foundation
import XCTest

/// docs/TUTORIAL.md as a newcomer runs it: every command of its ```console blocks, in order, with the
/// real binaries, and each command's standard output compared with the lines the page shows. So the
/// tutorial cannot go stale.
///
/// The page's conventions: a line starting with `$ ` is a command (run with bash from the repository
/// root, the build folder first on PATH); the lines after it, up to the next command or the end of the
/// block, are its standard output. In them `…` matches any text, and a decimal number matches a number
/// within 0.02 + 2% of it (another CPU's BLAS kernel may move the last digits); everything else,
/// integers included, must match exactly.
final class TutorialTests: XCTestCase {
    struct Step {
        var command: String
        var expected: [String]
        var line: Int
    }

    /// A tutorial command taking longer than this is a hang (the longest, the cluster's job, takes ~1 s).
    static let stepSecondsMax = 120.0

    static var tutorialPath: String { Binaries.repositoryRoot + "/docs/TUTORIAL.md" }

    /// The console blocks' commands and their expected output, in page order.
    static func steps(of text: String) -> [Step] {
        var steps: [Step] = []
        var inConsole = false
        for (i, raw) in text.components(separatedBy: "\n").enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces) == "```" ? "```" : raw
            if !inConsole {
                inConsole = line == "```console"
                continue
            }
            if line == "```" {
                inConsole = false
            } else if line.hasPrefix("$ ") {
                steps.append(Step(command: String(line.dropFirst(2)), expected: [], line: i + 1))
            } else if !steps.isEmpty {
                steps[steps.count - 1].expected.append(line)
            }
        }
        return steps
    }

    /// Whether `actual` is `expected` with its `…` and decimal numbers read as the page's conventions say.
    static func matches(_ actual: String, _ expected: String) -> Bool {
        let number = try! NSRegularExpression(pattern: #"-?[0-9]+\.[0-9]+"#)
        var pattern = "^"
        var wanted: [Double] = []
        for (i, piece) in expected.components(separatedBy: "…").enumerated() {
            if i > 0 { pattern += ".*?" }
            var last = piece.startIndex
            for m in number.matches(in: piece, range: NSRange(piece.startIndex..., in: piece)) {
                let range = Range(m.range, in: piece)!
                pattern += NSRegularExpression.escapedPattern(for: String(piece[last..<range.lowerBound]))
                pattern += #"(-?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)"#
                wanted.append(Double(piece[range])!)
                last = range.upperBound
            }
            pattern += NSRegularExpression.escapedPattern(for: String(piece[last...]))
        }
        pattern += "$"
        let regex = try! NSRegularExpression(pattern: pattern)
        guard let m = regex.firstMatch(in: actual, range: NSRange(actual.startIndex..., in: actual)) else { return false }
        for (k, value) in wanted.enumerated() {
            guard let got = Double(actual[Range(m.range(at: k + 1), in: actual)!]),
                  abs(got - value) <= 0.02 + 0.02 * abs(value) else { return false }
        }
        return true
    }

    /// Runs `command` with bash from the repository root and waits for bash itself (`Binaries.spawn`,
    /// not Foundation's `Process`, so a daemon the command starts cannot stretch the wait).
    static func shell(_ command: String, environment: [String: String],
                      secondsMax: Double = stepSecondsMax) throws -> Binaries.Output {
        let root = Binaries.repositoryRoot.replacingOccurrences(of: "'", with: "'\\''")
        return try Binaries.spawn(["/bin/bash", "-c", "cd '\(root)' && \(command)"], environment: environment,
                                  secondsMax: secondsMax).output
    }

    // A command that does not end is killed at its deadline and reported, not waited on; output and
    // exit status come back as the shell left them.
    func testShellDeadlineAndOutput() throws {
        let start = Date()
        let hung = try Self.shell("sleep 30", environment: [:], secondsMax: 0.5)
        XCTAssertEqual(hung.status, 124)
        XCTAssertEqual(hung.stderr, "killed after 0.5 s")
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        let out = try Self.shell("pwd; echo oops >&2; exit 3", environment: [:])
        XCTAssertEqual(out.status, 3)
        XCTAssertEqual(out.stdout, Binaries.repositoryRoot + "\n")
        XCTAssertEqual(out.stderr, "oops\n")
    }

    // The matcher itself: wildcards, numeric tolerance, and exact text and integers.
    func testMatcher() {
        XCTAssertTrue(Self.matches("a 0.8812 b 39.7k samples/s", "a 0.8800 b … samples/s"))
        XCTAssertFalse(Self.matches("a 0.7100 b", "a 0.8800 b"))
        XCTAssertFalse(Self.matches("18 epochs", "17 epochs"))
        XCTAssertFalse(Self.matches("stopped", "stopped early"))
        XCTAssertTrue(Self.matches("x (y) [z]", "x (y) [z]"))
        XCTAssertFalse(Self.matches("", "ready"))
    }

    // Every command on the page runs, exits 0 and prints what the page shows.
    func testTutorialRunsAsWritten() throws {
        let text = try String(contentsOfFile: Self.tutorialPath, encoding: .utf8)
        let steps = Self.steps(of: text)
        XCTAssertGreaterThan(steps.count, 15, "the tutorial's console blocks were not found")
        let environment = ["PATH": Binaries.buildDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
                           "PS_BIN": Binaries.buildDirectory]
        // Whatever happens, no cluster of the tutorial's is left running.
        addTeardownBlock {
            _ = try? Self.shell("deploy/local/cluster.sh stop --dir runs/tutorial/cluster", environment: environment)
        }
        for step in steps {
            let out = try Self.shell(step.command, environment: environment)
            let place = "docs/TUTORIAL.md:\(step.line): $ \(step.command)"
            guard out.status == 0 else {
                return XCTFail("\(place)\nexited \(out.status)\nstdout:\n\(out.stdout)\nstderr:\n\(out.stderr.suffix(3000))")
            }
            var actual = out.stdout.components(separatedBy: "\n")
            if actual.last == "" { actual.removeLast() }
            let same = actual.count == step.expected.count && zip(actual, step.expected).allSatisfy { Self.matches($0, $1) }
            XCTAssertTrue(same, "\(place)\nexpected:\n\(step.expected.joined(separator: "\n"))\ngot:\n\(actual.joined(separator: "\n"))\nstderr:\n\(out.stderr.suffix(1500))")
        }
    }
}
