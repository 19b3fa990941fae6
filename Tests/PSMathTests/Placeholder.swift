import XCTest
@testable import PSMath

final class PSMathPlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
