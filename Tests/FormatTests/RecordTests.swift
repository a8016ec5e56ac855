import RepTokTensor
import RepTokTestSupport
import Foundation
import XCTest
@testable import RepTokFormat

final class RecordTests: XCTestCase {
    // MARK: Round trips

    func testRoundTripEachFixture() throws {
        for record in Fixtures.all {
            let bytes = try record.serialized()
            XCTAssertEqual(bytes.count, record.serializedCount)
            XCTAssertEqual(try RTKRecord.parse(bytes), [record])
            let (one, consumed) = try RTKRecord.parseOne(bytes)
            XCTAssertEqual(one, record)
            XCTAssertEqual(consumed, bytes.count)
            XCTAssertEqual(try one.serialized(), bytes, "re-serialization must be byte-identical")
        }
    }

    func testTypicalRecordIsSixtyFourBytes() throws {
        // 14 fixed + width 2 + height 1 + seed 1 + steps 1 + payload length 1 + 40 + CRC 4.
        let bytes = try Fixtures.typical.serialized()
        XCTAssertEqual(bytes.count, 64)
        XCTAssertEqual(bytes.count - Fixtures.typical.payload.count, 24, "per-record overhead")
        XCTAssertEqual(try Fixtures.minimal.serialized().count, RTKFormat.minRecordBytes)
        XCTAssertEqual(RTKFormat.minRecordBytes, 23)
        // The largest record (rtk.5): one 3-byte and one 2-byte dimension (pixel cap), every
        // other field at its cap.
        XCTAssertEqual(try Fixtures.extreme.serialized().count, 65_831)
    }

    /// rtk.5's overhead figures: 21 bytes plus the width and height varints for seed 0, one
    /// step, no name and a payload under 128 bytes; and the longest structure phase 1 delimits.
    func testOverheadFiguresOfTheManPage() throws {
        func overhead(_ w: Int, _ h: Int, payload: Int = 100) throws -> Int {
            let r = RTKRecord(fingerprint: 1, width: w, height: h, level: 5, seed: 0, sampler: .euler, steps: 1,
                              payload: [UInt8](repeating: 7, count: payload))
            return try r.serialized().count - payload
        }
        XCTAssertEqual(try overhead(127, 127), 23)
        XCTAssertEqual(try overhead(128, 96), 24)
        XCTAssertEqual(try overhead(96, 128), 24)
        XCTAssertEqual(try overhead(128, 128), 25)
        XCTAssertEqual(try overhead(16_383, 4_096), 25)
        XCTAssertEqual(try overhead(16_384, 128), 26, "a side of 16384 or more takes 3 bytes")
        XCTAssertEqual(try overhead(128, 128, payload: 128), 26, "a payload of 128 bytes or more takes 2")
        // Phase 1 walks 10-byte varints for width, height and steps before the values are
        // checked: such a record is delimited (a damaged record, skipped whole) at 65,854 bytes.
        var raw = RawRecord.named([UInt8](repeating: 0x61, count: 255))
        raw.width = [UInt8](repeating: 0xFF, count: 9) + [0x01]
        raw.height = raw.width; raw.steps = raw.width; raw.seed = raw.width
        raw.payload = [UInt8](repeating: 0, count: 65_536)
        let longest = raw.bytes
        XCTAssertEqual(longest.count, 65_854)
        XCTAssertEqual(longest.withUnsafeBytes { RTKRecord.scan($0, at: 0) },
                       .damaged(.outOfRange(field: "width", value: .max, range: 1...65_535), size: 65_854))
    }

    // MARK: Damaged streams (rtk.5, DAMAGED STREAMS)

    func testScanTellsHowFarADamagedRecordReaches() throws {
        let good = try Fixtures.typical.serialized(), n = good.count
        func scan(_ bytes: [UInt8], at offset: Int = 0) -> RTKScan { bytes.withUnsafeBytes { RTKRecord.scan($0, at: offset) } }
        XCTAssertEqual(scan(good), .record(Fixtures.typical, size: n))
        XCTAssertEqual(scan(try Fixtures.named.serialized() + good, at: try Fixtures.named.serialized().count),
                       .record(Fixtures.typical, size: n), "offsets count from the start of the buffer")
        // Intact structure: the record's own lengths delimit it, whatever is wrong inside.
        for c: Corruption in [.checksumMismatch, .levelZero, .unknownSampler, .zeroSteps, .pixelsOverCap, .nameAbsolute,
                              .nameBadUTF8] {
            let bytes = c.bytes
            guard case .damaged(let e, let size) = scan(bytes) else { XCTFail("\(c): \(scan(bytes))"); continue }
            XCTAssertEqual(size, bytes.count, "\(c)")
            XCTAssertTrue(c.expected(e), "\(c): \(e)")
        }
        // Broken structure: no known end.
        for c: Corruption in [.nameEmpty, .nameTooLong, .nameLengthBeyondEnd, .overlongVarint, .varintOverflow,
                              .payloadLengthBeyondEnd, .payloadOverCap, .truncatedMagic, .truncatedHeader,
                              .truncatedVarint, .truncatedChecksum, .badMagic] {
            guard case .broken(let e) = scan(c.bytes) else { XCTFail("\(c): \(scan(c.bytes))"); continue }
            XCTAssertTrue(c.expected(e), "\(c): \(e)")
        }
        // Unknown layout: nothing from here on can be delimited.
        XCTAssertEqual(scan(Corruption.futureVersion.bytes), .undelimitable(.unsupportedVersion(2)))
        XCTAssertEqual(scan(Corruption.versionZero.bytes), .undelimitable(.unsupportedVersion(0)))
        XCTAssertEqual(scan(Corruption.mustRejectFlag.bytes), .undelimitable(.unknownRequiredFlags(0x02)))
        // scan agrees with parseOne on every truncation and single-bit flip of a record.
        for cut in 0...n {
            let b = Array(good.prefix(cut))
            if case .record = scan(b) { XCTAssertEqual(cut, n) }
        }
        for i in 0..<n {
            for bit in 0..<8 {
                var m = good
                m[i] ^= 1 << bit
                switch scan(m) {
                case .record: XCTFail("byte \(i) bit \(bit) accepted")
                case .damaged(_, let size): XCTAssertLessThanOrEqual(size, m.count)
                case .broken, .undelimitable: break
                }
            }
        }
    }

    /// The example in Man/rtk.5 (EXAMPLES). Changing these bytes is a format change.
    func testGoldenExampleFromManPage() throws {
        let record = RTKRecord(fingerprint: 0x0123_4567_89AB_CDEF, width: 128, height: 96, level: 5,
                               seed: 0, sampler: .euler, steps: 1, payload: Array(0..<8))
        let expected: [UInt8] = [
            0xD2, 0x52, 0x54, 0x01, 0x00, 0x05, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, 0x80, 0x01,
            0x60, 0x00, 0x01, 0x08, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        ]
        let crc = RTKCRC32C.checksum(expected)
        XCTAssertEqual(crc, 0x40EA_3EA0, String(crc, radix: 16))
        let full = expected + [0xA0, 0x3E, 0xEA, 0x40]
        XCTAssertEqual(try record.serialized(), full)
        XCTAssertEqual(try RTKRecord.parse(full), [record])

        let named = RTKRecord(fingerprint: 0x0123_4567_89AB_CDEF, width: 640, height: 480, level: 9,
                              seed: 300, sampler: .heun, steps: 50, name: "a/b.png", payload: [0xAB])
        let namedExpected: [UInt8] = [
            0xD2, 0x52, 0x54, 0x01, 0x01, 0x19, 0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, 0x80, 0x05,
            0xE0, 0x03, 0xAC, 0x02, 0x32, 0x07, 0x61, 0x2F, 0x62, 0x2E, 0x70, 0x6E, 0x67, 0x01, 0xAB,
        ]
        let namedCRC = RTKCRC32C.checksum(namedExpected)
        XCTAssertEqual(namedCRC, 0x3996_2ED4, String(namedCRC, radix: 16))
        XCTAssertEqual(try named.serialized(), namedExpected + [0xD4, 0x2E, 0x96, 0x39])
    }

    func testDeterministic() throws {
        for record in Fixtures.all {
            XCTAssertEqual(try record.serialized(), try record.serialized())
            var copy = record
            copy.payload = Array(copy.payload)
            XCTAssertEqual(try copy.serialized(), try record.serialized())
        }
    }

    func testExtremeValuesRoundTrip() throws {
        var rng = SplitMix64(seed: 1)
        for _ in 0..<500 {
            let w = Int.random(in: 1...RTKFormat.maxDimension, using: &rng)
            let h = Int.random(in: 1...min(RTKFormat.maxDimension, RTKFormat.maxPixels / w), using: &rng)
            let r = RTKRecord(fingerprint: rng.next(), width: w, height: h,
                              level: Int.random(in: 1...9, using: &rng),
                              seed: rng.next() >> (rng.next() % 64),
                              sampler: Bool.random(using: &rng) ? .euler : .heun,
                              steps: Int.random(in: 1...1000, using: &rng),
                              name: Bool.random(using: &rng) ? "d\(rng.next() % 1000)/f.png" : nil,
                              payload: (0..<Int(rng.next() % 300)).map { _ in UInt8.random(in: 0...255, using: &rng) },
                              ignorableFlags: UInt8(rng.next() % 16) << 4)
            let bytes = try r.serialized()
            XCTAssertEqual(try RTKRecord.parse(bytes), [r])
        }
        // Corners of the caps.
        for (w, h) in [(65_535, 1), (1, 65_535), (8_192, 8_192), (65_535, 1_024)] {
            let r = RTKRecord(fingerprint: 1, width: w, height: h, level: 1, seed: 0, sampler: .euler,
                              steps: 1, payload: [])
            XCTAssertEqual(try RTKRecord.parse(try r.serialized()), [r])
        }
    }

    func testInputTypes() throws {
        let bytes = try RTKRecord.serialize([Fixtures.typical, Fixtures.named])
        let expected = [Fixtures.typical, Fixtures.named]
        XCTAssertEqual(try RTKRecord.parse(Data(bytes)), expected)
        XCTAssertEqual(try RTKRecord.parse(([0x00] + bytes)[1...]), expected)
        XCTAssertEqual(try bytes.withUnsafeBytes { try RTKRecord.parse($0) }, expected)
        XCTAssertEqual(try RTKRecord.parse(bytes.lazy.map { $0 }), expected)   // non-contiguous path
        XCTAssertEqual(try RTKRecord.parseOne(Data(bytes)).record, Fixtures.typical)
    }

    // MARK: Streams

    func testConcatenatedStream() throws {
        let records = Fixtures.all + [Fixtures.typical, Fixtures.named]
        let stream = try RTKRecord.serialize(records)
        XCTAssertEqual(stream, try records.flatMap { try $0.serialized() })
        XCTAssertEqual(try RTKRecord.parse(stream), records)

        // parseOne walks the stream record by record.
        var offset = 0
        var walked: [RTKRecord] = []
        while offset < stream.count {
            let (r, n) = try RTKRecord.parseOne(stream[offset...])
            walked.append(r)
            offset += n
        }
        XCTAssertEqual(walked, records)
    }

    func testStreamErrorsNameTheRecordAndOffset() throws {
        let first = try Fixtures.typical.serialized()
        var second = try Fixtures.named.serialized()
        second[second.count - 1] ^= 0xFF
        let e = expectRTKError(try RTKRecord.parse(first + second))
        guard case .inRecord(2, first.count, .checksumMismatch)? = e else {
            return XCTFail("\(String(describing: e))")
        }
        XCTAssertTrue(e!.description.hasPrefix("record 2 (byte 64): checksum mismatch"), e!.description)

        let t = expectRTKError(try RTKRecord.parse(first + [0x00, 0x01, 0x02]))
        XCTAssertEqual(t, .trailingBytes(offset: 64, count: 3))
        XCTAssertEqual(t?.description, "3 trailing bytes at byte 64 do not begin an .rtk record (bad magic)")
    }

    func testEmptyAndSerializeErrors() {
        XCTAssertEqual(expectRTKError(try RTKRecord.parse([UInt8]())), .emptyInput)
        XCTAssertEqual(expectRTKError(try RTKRecord.parseOne([UInt8]())), .emptyInput)
        var bad = Fixtures.typical
        bad.steps = 0
        let e = expectRTKError(try RTKRecord.serialize([Fixtures.typical, bad]))
        XCTAssertEqual(e, .inRecord(index: 2, offset: 64,
                                    .outOfRange(field: "steps", value: 0, range: 1...1000)))
    }

    // MARK: Writer validation

    func testWriterRejectsInvalidFields() {
        func rejects(_ change: (inout RTKRecord) -> Void, _ check: (RTKError) -> Bool, line: UInt = #line) {
            var r = Fixtures.typical
            change(&r)
            guard let e = expectRTKError(try r.serialized(), line: line) else { return }
            XCTAssertTrue(check(e), "\(e)", line: line)
        }
        rejects({ $0.width = 0 }) { if case .outOfRange("width", _, _) = $0 { return true }; return false }
        rejects({ $0.width = -5 }) { if case .outOfRange("width", _, _) = $0 { return true }; return false }
        rejects({ $0.height = 65_536 }) { if case .outOfRange("height", _, _) = $0 { return true }; return false }
        rejects({ $0.width = 9_000; $0.height = 9_000 }) { if case .tooManyPixels = $0 { return true }; return false }
        rejects({ $0.level = 0 }) { if case .outOfRange("quantizer level", _, _) = $0 { return true }; return false }
        rejects({ $0.level = 10 }) { if case .outOfRange("quantizer level", _, _) = $0 { return true }; return false }
        rejects({ $0.steps = 1_001 }) { if case .outOfRange("steps", _, _) = $0 { return true }; return false }
        rejects({ $0.name = "" }) { $0 == .badName(.empty) }
        rejects({ $0.name = "/abs" }) { $0 == .badName(.absolute) }
        rejects({ $0.name = String(repeating: "é", count: 128) }) { $0 == .badName(.tooLong(256)) }
        rejects({ $0.payload = [UInt8](repeating: 0, count: 65_537) }) {
            if case .outOfRange("payload length", 65_537, _) = $0 { return true }; return false
        }
        rejects({ $0.ignorableFlags = 0x01 }) { $0 == .invalidIgnorableFlags(0x01) }
    }

    // MARK: Names

    func testAcceptedNames() throws {
        for name in ["a", "image.png", "dir/sub/file.rtk", ".hidden", "..a", "a..", "...", "a.b/c.d",
                     "ünïcödé/写真.jpg", "emoji-🦊", "with space", "C", "1:2", "ab:c",
                     String(repeating: "x", count: 255)] {
            var r = Fixtures.typical
            r.name = name
            let parsed = try RTKRecord.parse(try r.serialized())
            XCTAssertEqual(parsed.first?.name, name)
        }
    }

    func testRejectedNames() {
        let cases: [(String, RTKNameProblem)] = [
            ("", .empty), ("/etc/passwd", .absolute), ("/", .absolute), ("C:/x", .driveLetter),
            ("c:x", .driveLetter), ("a//b", .emptyComponent), ("a/", .emptyComponent),
            ("./a", .dotComponent), ("a/.", .dotComponent), ("..", .dotDotComponent),
            ("a/../b", .dotDotComponent), ("a\\b", .backslash), ("..\\x", .backslash),
            ("a\nb", .controlCharacter(0x0A)), ("a\u{0}b", .controlCharacter(0)),
            ("\u{7F}", .controlCharacter(0x7F)), ("x\u{85}", .controlCharacter(0x85)),
            ("\u{1B}[31m", .controlCharacter(0x1B)),
        ]
        for (name, problem) in cases {
            XCTAssertThrowsError(try RTKName.validate(name)) {
                XCTAssertEqual($0 as? RTKError, .badName(problem), name.debugDescription)
            }
            // And the same bytes crafted into a record (valid checksum) are rejected on read.
            let bytes = name.isEmpty ? RawRecord.named([]).bytes : RawRecord.named(name).bytes
            XCTAssertEqual(expectRTKError(try RTKRecord.parseOne(bytes)), .badName(problem), name.debugDescription)
        }
        for bad: [UInt8] in [[0xFF], [0x61, 0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                             [0xE2, 0x82]] {
            XCTAssertEqual(expectRTKError(try RTKRecord.parseOne(RawRecord.named(bad).bytes)),
                           .badName(.invalidUTF8), "\(bad)")
        }
    }

    // MARK: Error messages

    func testErrorMessages() {
        XCTAssertEqual(RTKError.badMagic(offset: 0).description, "not an .rtk file (bad magic at byte 0)")
        XCTAssertEqual(RTKError.unsupportedVersion(3).description,
                       "unsupported .rtk version 3 (this build reads version 1)")
        XCTAssertEqual(RTKError.badName(.absolute).description, "record name is an absolute path")
        XCTAssertEqual(RTKError.inRecord(index: 2, offset: 64, .checksumMismatch(stored: 1, computed: 0xABCDEF12)).description,
                       "record 2 (byte 64): checksum mismatch (stored 0x00000001, computed 0xABCDEF12)")
        XCTAssertEqual(RTKError.unknownRequiredFlags(0x04).description,
                       "record uses unsupported features (must-reject flag bits 0x04 set)")
        // Number agreement (issue #14).
        XCTAssertEqual(RTKError.trailingBytes(offset: 64, count: 1).description,
                       "1 trailing byte at byte 64 does not begin an .rtk record (bad magic)")
        XCTAssertEqual(RTKError.lengthBeyondEnd(field: "payload", offset: 19, length: 2, available: 1).description,
                       "truncated record: payload at byte 19 is 2 bytes but only 1 is left")
        XCTAssertEqual(RTKError.lengthBeyondEnd(field: "name", offset: 19, length: 1, available: 0).description,
                       "truncated record: name at byte 19 is 1 byte but only 0 are left")
        // Every corruption's message is one printable line.
        for c in Corruption.allCases {
            guard let e = try? { () -> RTKError? in
                do { _ = try RTKRecord.parse(c.bytes); return nil } catch let e as RTKError { return e }
            }() else { continue }
            XCTAssertFalse(e.description.isEmpty)
            XCTAssertFalse(e.description.contains { $0.isNewline || $0.asciiValue.map { $0 < 0x20 } == true },
                           "\(c): \(e.description)")
        }
    }
}
