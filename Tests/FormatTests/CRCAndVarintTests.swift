import RepTokTensor
import RepTokTestSupport
import XCTest
@testable import RepTokFormat

final class CRCAndVarintTests: XCTestCase {
    func testCRC32CCheckValue() {
        // The standard check value (Rocksoft model catalogue, CRC-32/ISCSI).
        XCTAssertEqual(RTKCRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(RTKCRC32C.checksum([UInt8]()), 0)
    }

    func testCRC32CRFC3720Vectors() {
        // RFC 3720 appendix B.4 (the RFC lists the CRC bytes in wire order, little-endian).
        XCTAssertEqual(RTKCRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(RTKCRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(RTKCRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(RTKCRC32C.checksum((0..<32).reversed().map { UInt8($0) }), 0x113F_DB5C)
    }

    func testCRC32CIncremental() {
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let whole = RTKCRC32C.checksum(data)
        let split = data.withUnsafeBytes { b in
            RTKCRC32C.update(RTKCRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[..<333])),
                             UnsafeRawBufferPointer(rebasing: b[333...]))
        }
        XCTAssertEqual(whole, split)
    }

    func testVarintEncodings() {
        let table: [(UInt64, [UInt8])] = [
            (0, [0x00]), (1, [0x01]), (127, [0x7F]), (128, [0x80, 0x01]), (300, [0xAC, 0x02]),
            (16_383, [0xFF, 0x7F]), (16_384, [0x80, 0x80, 0x01]), (65_535, [0xFF, 0xFF, 0x03]),
            (UInt64(1) << 63, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            (.max, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        ]
        for (value, bytes) in table {
            XCTAssertEqual(RTKVarint.encode(value), bytes, "\(value)")
            XCTAssertEqual(RTKVarint.encodedLength(value), bytes.count)
            let d = bytes.withUnsafeBytes { RTKVarint.decode($0, at: 0) }
            XCTAssertEqual(d, .value(value, length: bytes.count))
        }
    }

    func testVarintRejections() {
        func dec(_ b: [UInt8]) -> RTKVarint.Decoded { b.withUnsafeBytes { RTKVarint.decode($0, at: 0) } }
        XCTAssertEqual(dec([]), .truncated)
        XCTAssertEqual(dec([0x80]), .truncated)
        XCTAssertEqual(dec([0xFF, 0xFF]), .truncated)
        XCTAssertEqual(dec([0x80, 0x00]), .overlong)
        XCTAssertEqual(dec([0x81, 0x80, 0x00]), .overlong)
        XCTAssertEqual(dec([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00]), .overlong)
        XCTAssertEqual(dec([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]), .overflow)
        XCTAssertEqual(dec([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), .overflow)
        XCTAssertEqual(dec([UInt8](repeating: 0x80, count: 10) + [0x01]), .overflow)
        XCTAssertEqual(dec([UInt8](repeating: 0xFF, count: 20)), .overflow)
    }

    func testVarintExhaustiveSmallAndRandom() {
        var rng = SplitMix64(seed: 7)
        var values: [UInt64] = Array(0...20_000)
        for _ in 0..<20_000 { values.append(rng.next() >> (rng.next() % 64)) }
        for v in values {
            let e = RTKVarint.encode(v)
            XCTAssertEqual(e.withUnsafeBytes { RTKVarint.decode($0, at: 0) }, .value(v, length: e.count))
        }
    }
}
