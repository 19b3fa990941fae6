import XCTest
@testable import PSTrain

final class PSTrainPlaceholderTests: XCTestCase {
    func testModuleLoads() {}
}
