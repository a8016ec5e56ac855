// Shared helpers for the format tests: fixtures and a raw record builder that
// can write any field value (including illegal ones) with a correct checksum.

import RepTokTestSupport
import XCTest
@testable import RepTokFormat

enum Fixtures {
    /// The typical record: 128x96, level 5, seed 0, Euler 1 step, 40-byte payload, no name.
    static let typical = RTKRecord(fingerprint: 0x0123_4567_89AB_CDEF, width: 128, height: 96, level: 5,
                                   seed: 0, sampler: .euler, steps: 1, payload: Array(0..<40))
    static let named = RTKRecord(fingerprint: 0xFEED_FACE_CAFE_BEEF, width: 256, height: 256, level: 3,
                                 seed: 42, sampler: .heun, steps: 25, name: "photos/cat.jpg",
                                 payload: [0xAA, 0xBB, 0xCC])
    static let minimal = RTKRecord(fingerprint: 0, width: 1, height: 1, level: 1, seed: 0,
                                   sampler: .euler, steps: 1, payload: [])
    static let extreme = RTKRecord(fingerprint: .max, width: 65_535, height: 1_024, level: 9,
                                   seed: .max, sampler: .heun, steps: 1_000,
                                   name: String(repeating: "n", count: 255),
                                   payload: (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31) },
                                   ignorableFlags: 0xF0)
    static let all = [typical, named, minimal, extreme]
}

/// A record written field by field, each field as raw bytes, then a CRC-32C over all of it.
struct RawRecord {
    var magic: [UInt8] = RTKFormat.magic
    var version: UInt8 = 1
    var flags: UInt8 = 0
    var mode: UInt8 = 0x05
    var fingerprint: [UInt8] = [0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01]
    var width: [UInt8] = RTKVarint.encode(128)
    var height: [UInt8] = RTKVarint.encode(96)
    var seed: [UInt8] = RTKVarint.encode(0)
    var steps: [UInt8] = RTKVarint.encode(1)
    var nameLength: [UInt8]? = nil
    var name: [UInt8] = []
    var payloadLength: [UInt8]? = nil
    var payload: [UInt8] = Array(0..<40)
    var crcDelta: UInt32 = 0

    /// A record with a name (sets the flag and the length).
    static func named(_ bytes: [UInt8]) -> RawRecord {
        var r = RawRecord()
        r.flags = RTKFormat.flagHasName
        r.name = bytes
        r.nameLength = RTKVarint.encode(UInt64(bytes.count))
        return r
    }

    static func named(_ s: String) -> RawRecord { named(Array(s.utf8)) }

    var bytes: [UInt8] {
        var out = magic + [version, flags, mode] + fingerprint + width + height + seed + steps
        if let nameLength { out += nameLength + name }
        out += (payloadLength ?? RTKVarint.encode(UInt64(payload.count))) + payload
        let crc = RTKCRC32C.checksum(out) &+ crcDelta
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> UInt32(8 * i))) }
        return out
    }
}

/// Runs `body`, expecting an RTKError; returns it (nil and a failure otherwise).
func expectRTKError<T>(_ body: @autoclosure () throws -> T, _ message: String = "",
                       file: StaticString = #filePath, line: UInt = #line) -> RTKError? {
    do {
        _ = try body()
        XCTFail("expected an RTKError, got success. \(message)", file: file, line: line)
    } catch let e as RTKError {
        return e
    } catch {
        XCTFail("expected an RTKError, got \(error). \(message)", file: file, line: line)
    }
    return nil
}
