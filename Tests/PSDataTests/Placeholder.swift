import XCTest
@testable import PSData

final class PSDataPlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
