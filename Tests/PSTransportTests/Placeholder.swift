import XCTest

final class PSTransportTestsPlaceholder: XCTestCase {
    func testModuleLoads() {}
}
