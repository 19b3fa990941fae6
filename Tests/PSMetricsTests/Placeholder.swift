import XCTest

final class PSMetricsTestsPlaceholder: XCTestCase {
    func testModuleLoads() {}
}
