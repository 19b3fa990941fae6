import XCTest

final class PSServerTestsPlaceholder: XCTestCase {
    func testModuleLoads() {}
}
