import Foundation
import RepTokCodec
import RepTokFormat
import RepTokModels
import XCTest

/// The typed view of a codec config's sampler name, and the record <-> flow sampler mapping.
final class CodecConfigTests: XCTestCase {
    func testDefaultSamplerTypedAndMappedBothWays() throws {
        var c = CodecConfig()
        XCTAssertEqual(c.sampler, .euler)
        c.defaultSampler = "heun"
        XCTAssertEqual(c.sampler, .heun)
        c.defaultSampler = "unknown"   // refused by CodecModel on load; reads as Euler
        XCTAssertEqual(c.sampler, .euler)
        XCTAssertEqual(SamplerKind(named: "heun"), .heun)
        XCTAssertEqual(SamplerKind(named: "euler"), .euler)
        XCTAssertEqual(SamplerKind(named: "Heun"), .euler)
        for s in RTKSampler.allCases { XCTAssertEqual(RTKSampler(SamplerKind(s)), s) }
        for k in SamplerKind.allCases { XCTAssertEqual(SamplerKind(RTKSampler(k)), k) }
        XCTAssertEqual(RTKSampler(SamplerKind.heun).description, SamplerKind.heun.rawValue)
    }

    /// The config's JSON keeps the sampler as its name (fingerprints hash these bytes).
    func testSamplerStaysANameOnTheWire() throws {
        var c = CodecConfig()
        c.defaultSampler = "heun"
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        let json = String(decoding: try e.encode(c), as: UTF8.self)
        XCTAssertTrue(json.contains("\"default_sampler\":\"heun\""), json)
    }
}
