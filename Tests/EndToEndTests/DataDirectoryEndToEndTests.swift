import Foundation
import XCTest

/// One server per data directory, with the real binaries.
final class DataDirectoryEndToEndTests: XCTestCase {
    // A second ps-server on a directory a running one holds exits 1, naming the directory and the
    // holder's pid; once the holder is killed with SIGKILL (no clean-up), the directory is free again.
    func testSecondServerIsRefusedAndAKilledOneLeavesNoStaleLock() throws {
        let cluster = try LocalCluster()
        defer { cluster.stop() }
        let data = cluster.directory + "/data"
        let second = try Binaries.run("ps-server", ["--listen", "127.0.0.1:0", "--data-dir", data])
        XCTAssertEqual(second.status, 1, second.stderr)
        XCTAssertTrue(second.stderr.contains("\(data): the data directory is in use by process \(cluster.server.processIdentifier) (ps-server)"),
                      second.stderr)

        kill(cluster.server.processIdentifier, SIGKILL)
        cluster.server.waitUntilExit()
        let again = try cluster.launch("ps-server", ["--listen", "127.0.0.1:0", "--data-dir", data], log: "again")
        defer { again.terminate(); again.waitUntilExit() }
        try cluster.waitUntil("the restarted server listens", timeout: 20) { cluster.log("again").contains("listening") }
    }

    // A data directory that cannot be created is refused at start (exit 1), naming the path.
    func testUnusableDataDirectoryIsRefusedAtStart() throws {
        let out = try Binaries.run("ps-server", ["--listen", "127.0.0.1:0", "--data-dir", "/dev/null/ps-data"])
        XCTAssertEqual(out.status, 1, out.stderr)
        XCTAssertTrue(out.stderr.contains("/dev/null: cannot create the data directory: it exists and is not a directory"), out.stderr)
    }
}
