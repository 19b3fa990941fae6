import XCTest

final class PSEventFileTestsPlaceholder: XCTestCase {
    func testModuleLoads() {}
}
