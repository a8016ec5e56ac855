// Hostile input, in the style of llama.cpp tests/test-gguf.cpp: handcrafted corruptions that
// must each be rejected for the stated reason, truncation at every byte, every single-bit flip,
// and a seeded mutation fuzz loop.

import RepTokTensor
import RepTokTestSupport
import XCTest
@testable import RepTokFormat

/// Handcrafted bad inputs. All but `checksumMismatch` carry a correct CRC-32C, so each one
/// reaches the check it targets.
enum Corruption: CaseIterable {
    case emptyInput, badMagic, asciiMagic, zstdMagic, futureVersion, versionZero
    case mustRejectFlag, mustRejectFlagHigh, levelZero, levelOverCap, unknownSampler
    case zeroSteps, stepsOverCap, widthZero, heightZero, sizeOverCap, pixelsOverCap
    case nameEmpty, nameTooLong, nameLengthBeyondEnd, nameAbsolute, nameDriveLetter, nameDotDot
    case nameDot, nameEmptyComponent, nameBackslash, nameControlChar, nameNUL, nameBadUTF8
    case nameOverlongUTF8, overlongVarint, overlongZeroVarint, varintOverflow, varintElevenBytes
    case payloadLengthBeyondEnd, payloadOverCap, payloadLengthHuge, checksumMismatch
    case truncatedMagic, truncatedHeader, truncatedVarint, truncatedChecksum
    case trailingGarbage, trailingPartialRecord, secondRecordFutureVersion, secondRecordChecksum

    var bytes: [UInt8] {
        var r = RawRecord()
        let valid = RawRecord().bytes
        switch self {
        case .emptyInput: return []
        case .badMagic: r.magic = [0xD2, 0x52, 0x55]
        case .asciiMagic: r.magic = Array("RTK".utf8)
        case .zstdMagic: return [0x28, 0xB5, 0x2F, 0xFD] + valid
        case .futureVersion: r.version = 2
        case .versionZero: r.version = 0
        case .mustRejectFlag: r.flags = 0x02
        case .mustRejectFlagHigh: r.flags = 0x08 | 0xF0
        case .levelZero: r.mode = 0x00
        case .levelOverCap: r.mode = 0x0A
        case .unknownSampler: r.mode = 0x25
        case .zeroSteps: r.steps = [0x00]
        case .stepsOverCap: r.steps = RTKVarint.encode(1001)
        case .widthZero: r.width = [0x00]
        case .heightZero: r.height = [0x00]
        case .sizeOverCap: r.width = RTKVarint.encode(65_536)
        case .pixelsOverCap: r.width = RTKVarint.encode(65_535); r.height = RTKVarint.encode(65_535)
        case .nameEmpty: r = .named([])
        case .nameTooLong: r = .named([UInt8](repeating: 0x61, count: 256))
        case .nameLengthBeyondEnd: r = .named("abc"); r.nameLength = RTKVarint.encode(200)
        case .nameAbsolute: r = .named("/etc/passwd")
        case .nameDriveLetter: r = .named("C:\\Windows")  // backslash check comes first...
            r = .named("C:/Windows")                        // ...so use a forward slash
        case .nameDotDot: r = .named("../../.ssh/authorized_keys")
        case .nameDot: r = .named("a/./b")
        case .nameEmptyComponent: r = .named("a//b")
        case .nameBackslash: r = .named("dir\\file")
        case .nameControlChar: r = .named("bad\nname")
        case .nameNUL: r = .named([0x61, 0x00, 0x62])
        case .nameBadUTF8: r = .named([0x61, 0xFF, 0x62])
        case .nameOverlongUTF8: r = .named([0xC0, 0xAE, 0xC0, 0xAE])  // overlong "..", a classic
        case .overlongVarint: r.width = [0x80, 0x81, 0x00]
        case .overlongZeroVarint: r.seed = [0x80, 0x00]
        case .varintOverflow: r.seed = [UInt8](repeating: 0xFF, count: 9) + [0x02]
        case .varintElevenBytes: r.seed = [UInt8](repeating: 0x80, count: 10) + [0x01]
        case .payloadLengthBeyondEnd: r.payloadLength = RTKVarint.encode(1000)
        case .payloadOverCap:
            r.payload = [UInt8](repeating: 7, count: 65_537)
        case .payloadLengthHuge: r.payloadLength = RTKVarint.encode(.max)
        case .checksumMismatch: r.crcDelta = 1
        case .truncatedMagic: return Array(valid.prefix(2))
        case .truncatedHeader: return Array(valid.prefix(10))
        case .truncatedVarint: return Array(valid.prefix(15))   // inside the 2-byte width
        case .truncatedChecksum: return Array(valid.dropLast(2))
        case .trailingGarbage: return valid + [0x00, 0xFF]
        case .trailingPartialRecord: return valid + valid.prefix(20)
        case .secondRecordFutureVersion:
            var next = RawRecord(); next.version = 7
            return valid + next.bytes
        case .secondRecordChecksum:
            var next = RawRecord(); next.crcDelta = 0x100
            return valid + next.bytes
        }
        return r.bytes
    }

    /// Whether `e` (as thrown by `RTKRecord.parse`) is the expected rejection.
    func expected(_ e: RTKError) -> Bool {
        let n = RawRecord().bytes.count
        let inner = e.underlying
        switch self {
        case .emptyInput: return e == .emptyInput
        case .badMagic, .asciiMagic, .zstdMagic: return e == .badMagic(offset: 0)
        case .futureVersion: return inner == .unsupportedVersion(2)
        case .versionZero: return inner == .unsupportedVersion(0)
        case .mustRejectFlag: return inner == .unknownRequiredFlags(0x02)
        case .mustRejectFlagHigh: return inner == .unknownRequiredFlags(0x08)
        case .levelZero: return inner == .outOfRange(field: "quantizer level", value: 0, range: 1...9)
        case .levelOverCap: return inner == .outOfRange(field: "quantizer level", value: 10, range: 1...9)
        case .unknownSampler: return inner == .unknownSampler(2)
        case .zeroSteps: return inner == .outOfRange(field: "steps", value: 0, range: 1...1000)
        case .stepsOverCap: return inner == .outOfRange(field: "steps", value: 1001, range: 1...1000)
        case .widthZero: return inner == .outOfRange(field: "width", value: 0, range: 1...65_535)
        case .heightZero: return inner == .outOfRange(field: "height", value: 0, range: 1...65_535)
        case .sizeOverCap: return inner == .outOfRange(field: "width", value: 65_536, range: 1...65_535)
        case .pixelsOverCap: return inner == .tooManyPixels(width: 65_535, height: 65_535, cap: 1 << 26)
        case .nameEmpty: return inner == .badName(.empty)
        case .nameTooLong: return inner == .badName(.tooLong(256))
        case .nameLengthBeyondEnd:
            if case .lengthBeyondEnd("name", _, 200, _) = inner { return true }
            return false
        case .nameAbsolute: return inner == .badName(.absolute)
        case .nameDriveLetter: return inner == .badName(.driveLetter)
        case .nameDotDot: return inner == .badName(.dotDotComponent)
        case .nameDot: return inner == .badName(.dotComponent)
        case .nameEmptyComponent: return inner == .badName(.emptyComponent)
        case .nameBackslash: return inner == .badName(.backslash)
        case .nameControlChar: return inner == .badName(.controlCharacter(0x0A))
        case .nameNUL: return inner == .badName(.controlCharacter(0))
        case .nameBadUTF8, .nameOverlongUTF8: return inner == .badName(.invalidUTF8)
        case .overlongVarint: return inner == .overlongVarint(field: "width", offset: 14)
        case .overlongZeroVarint: return inner == .overlongVarint(field: "seed", offset: 17)
        case .varintOverflow, .varintElevenBytes: return inner == .varintOverflow(field: "seed", offset: 17)
        case .payloadLengthBeyondEnd:
            if case .lengthBeyondEnd("payload", 19, 1000, _) = inner { return true }
            return false
        case .payloadOverCap:
            return inner == .outOfRange(field: "payload length", value: 65_537, range: 0...65_536)
        case .payloadLengthHuge:
            return inner == .outOfRange(field: "payload length", value: .max, range: 0...65_536)
        case .checksumMismatch:
            if case .checksumMismatch = inner { return true }
            return false
        case .truncatedMagic: return inner == .truncated(field: "magic", offset: 0)
        case .truncatedHeader: return inner == .truncated(field: "fingerprint", offset: 6)
        case .truncatedVarint: return inner == .truncated(field: "width", offset: 14)
        case .truncatedChecksum: return inner == .truncated(field: "checksum", offset: n - 4)
        case .trailingGarbage: return e == .trailingBytes(offset: n, count: 2)
        case .trailingPartialRecord:
            // 20 bytes of the next record: its payload length (40) runs past the end.
            return e == .inRecord(index: 2, offset: n,
                                  .lengthBeyondEnd(field: "payload", offset: n + 19, length: 40, available: 0))
        case .secondRecordFutureVersion: return e == .inRecord(index: 2, offset: n, .unsupportedVersion(7))
        case .secondRecordChecksum:
            if case .inRecord(2, n, .checksumMismatch) = e { return true }
            return false
        }
    }

    /// Corruptions of the first record: `parseOne` must reject them as well.
    var affectsFirstRecord: Bool {
        switch self {
        case .trailingGarbage, .trailingPartialRecord, .secondRecordFutureVersion, .secondRecordChecksum:
            return false
        default: return true
        }
    }
}

final class HostileInputTests: XCTestCase {
    func testBuilderMakesAValidRecord() throws {
        XCTAssertEqual(try RTKRecord.parse(RawRecord().bytes), [Fixtures.typical])
        XCTAssertEqual(RawRecord().bytes, try Fixtures.typical.serialized())
    }

    func testEveryCorruptionIsRejectedForItsReason() {
        for c in Corruption.allCases {
            let bytes = c.bytes
            guard let e = expectRTKError(try RTKRecord.parse(bytes), "\(c)") else { continue }
            XCTAssertTrue(c.expected(e), "\(c): unexpected error: \(e)")
            if c.affectsFirstRecord {
                XCTAssertNotNil(expectRTKError(try RTKRecord.parseOne(bytes), "\(c) via parseOne"))
            } else {
                // The first record alone is fine; the stream is not.
                XCTAssertEqual(try? RTKRecord.parseOne(bytes).record, Fixtures.typical, "\(c)")
            }
        }
    }

    func testTruncationAtEveryByteThrows() throws {
        for record in [Fixtures.typical, Fixtures.named, Fixtures.minimal] {
            let bytes = try record.serialized()
            for cut in 0..<bytes.count {
                XCTAssertNotNil(expectRTKError(try RTKRecord.parse(bytes[..<cut]), "cut at \(cut)"))
                XCTAssertNotNil(expectRTKError(try RTKRecord.parseOne(bytes[..<cut]), "cut at \(cut)"))
            }
        }
        // A two-record stream: every cut throws except the one at the record boundary.
        let a = try Fixtures.named.serialized(), b = try Fixtures.typical.serialized()
        let stream = a + b
        for cut in 0..<stream.count where cut != a.count {
            XCTAssertNotNil(expectRTKError(try RTKRecord.parse(stream[..<cut]), "stream cut at \(cut)"))
        }
        XCTAssertEqual(try RTKRecord.parse(stream[..<a.count]), [Fixtures.named])
    }

    func testEverySingleBitFlipThrows() throws {
        // CRC-32C detects every single-bit error in the covered bytes; flips in the magic,
        // version or must-reject flags fail earlier; flips in the CRC itself mismatch.
        var extremeSmall = Fixtures.extreme
        extremeSmall.payload = Array(extremeSmall.payload.prefix(300))
        for record in [Fixtures.typical, Fixtures.named, Fixtures.minimal, extremeSmall] {
            let bytes = try record.serialized()
            var flips = 0
            for i in 0..<bytes.count {
                for bit in 0..<8 {
                    var m = bytes
                    m[i] ^= 1 << bit
                    XCTAssertNotNil(expectRTKError(try RTKRecord.parse(m), "byte \(i) bit \(bit)"))
                    XCTAssertNotNil(expectRTKError(try RTKRecord.parseOne(m), "byte \(i) bit \(bit)"))
                    flips += 1
                }
            }
            XCTAssertEqual(flips, bytes.count * 8)
        }
    }

    /// Seeded mutation fuzzing: parse must never crash, and whatever it accepts must
    /// re-serialize to exactly the input (one encoding per record, so a stream is canonical).
    func testSeededMutationFuzz() throws {
        let seeds: [[UInt8]] = try [
            Fixtures.typical.serialized(), Fixtures.named.serialized(), Fixtures.minimal.serialized(),
            RTKRecord.serialize([Fixtures.typical, Fixtures.named, Fixtures.minimal]),
        ]
        var rng = SplitMix64(seed: 0x5EED_0F_2B7C)
        var accepted = 0, rejected = 0
        let iterations = 20_000
        for iteration in 0..<iterations {
            var m = seeds[Int(rng.next() % UInt64(seeds.count))]
            let rounds = 1 + Int(rng.next() % 4)
            for _ in 0..<rounds { mutate(&m, &rng, seeds) }
            // Half the time, repair the checksum of a single-record input so the mutation
            // reaches the field checks behind it.
            if iteration % 2 == 1 && m.count >= 8 {
                let crc = RTKCRC32C.checksum(m.dropLast(4))
                for i in 0..<4 { m[m.count - 4 + i] = UInt8(truncatingIfNeeded: crc >> UInt32(8 * i)) }
            }
            do {
                let records = try RTKRecord.parse(m)
                XCTAssertFalse(records.isEmpty)
                let again = try RTKRecord.serialize(records)
                XCTAssertEqual(again, m, "iteration \(iteration): accepted input does not re-serialize to itself")
                XCTAssertEqual(try RTKRecord.parse(again), records)
                accepted += 1
            } catch let e as RTKError {
                XCTAssertFalse(e.description.contains("\n"))
                rejected += 1
            }
        }
        XCTAssertEqual(accepted + rejected, iterations)
        XCTAssertGreaterThan(accepted, 0, "some mutations (e.g. inserting or splicing whole records) stay valid")
        print("fuzz: \(iterations) mutations, \(accepted) accepted, \(rejected) rejected")
    }

    private func mutate(_ m: inout [UInt8], _ rng: inout SplitMix64, _ seeds: [[UInt8]]) {
        func pos(_ extra: Int = 0) -> Int { Int(rng.next() % UInt64(m.count + extra)) }
        let interesting: [UInt8] = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xD2, 0x52, 0x54, 0x2F, 0x2E, 0x5C]
        switch rng.next() % 8 {
        case 0 where !m.isEmpty: m[pos()] = UInt8(truncatingIfNeeded: rng.next())
        case 1 where !m.isEmpty: m[pos()] = interesting[Int(rng.next() % UInt64(interesting.count))]
        case 2 where !m.isEmpty: m[pos()] ^= UInt8(1) << (rng.next() % 8)
        case 3:  // insert 1-16 random bytes
            let n = 1 + Int(rng.next() % 16)
            m.insert(contentsOf: (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: pos(1))
        case 4 where !m.isEmpty:  // delete a range
            let a = pos(), n = 1 + Int(rng.next() % 16)
            m.removeSubrange(a..<min(m.count, a + n))
        case 5:  // truncate
            m.removeSubrange(pos(1)...)
        case 6:  // splice in a slice of a seed (often a whole record)
            let s = seeds[Int(rng.next() % UInt64(seeds.count))]
            let a = Int(rng.next() % UInt64(s.count)), b = a + Int(rng.next() % UInt64(s.count - a + 1))
            if rng.next() % 2 == 0 { m.insert(contentsOf: s[a..<b], at: pos(1)) } else { m += s }
        default:  // duplicate a chunk at the end
            if !m.isEmpty {
                let a = pos()
                m += m[a..<min(m.count, a + 1 + Int(rng.next() % 64))]
            }
        }
    }
}
