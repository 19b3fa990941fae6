import XCTest
@testable import PSWire

final class PSWirePlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
