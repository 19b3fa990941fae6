import Foundation
import PSStorage
import XCTest

/// One holder per data directory: a second lock is refused naming the holder, and a released lock is free.
final class DataDirectoryLockTests: XCTestCase {
    func testSecondLockIsRefusedUntilTheFirstIsReleased() throws {
        let directory = NSTemporaryDirectory() + "ps-lock-\(UUID().uuidString)/data"
        defer { try? FileManager.default.removeItem(atPath: (directory as NSString).deletingLastPathComponent) }
        let first = try DataDirectoryLock(directory: directory, program: "ps-server")
        XCTAssertEqual(try String(contentsOfFile: directory + "/lock", encoding: .utf8), "pid \(getpid())\nprogram ps-server\n")
        XCTAssertThrowsError(try DataDirectoryLock(directory: directory, program: "ps-server")) { error in
            let e = error as? StoreError
            XCTAssertEqual(e?.path, directory)
            XCTAssertTrue(e?.message.contains("in use by process \(getpid()) (ps-server)") ?? false, "\(error)")
        }
        first.release()
        let second = try DataDirectoryLock(directory: directory, program: "ps-server")
        second.release()
    }
}
