import XCTest
@testable import PSCore

final class PSCorePlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
