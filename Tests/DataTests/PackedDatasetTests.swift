import RepTokTestSupport
import Foundation
import XCTest
import RepTokData

final class PackedDatasetTests: XCTestCase {
    func testCRC32CheckValue() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        // slicing-by-8 and the byte loop agree at every length and split point
        let data = randomPixels(37, 11, seed: 9)
        var bytewise: UInt32 = 0
        for b in data { bytewise = withUnsafeBytes(of: b) { CRC32.update(bytewise, $0) } }
        XCTAssertEqual(CRC32.checksum(data), bytewise)
    }

    func testRoundTripFileAndMemory() throws {
        let (bytes, imgs) = try samplePack()
        let path = tempPath("roundtrip.rtds")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        for ds in [try PackedDataset(path: path, verifyChecksums: true), try PackedDataset(bytes: bytes, verifyChecksums: true)] {
            XCTAssertEqual(ds.count, imgs.count)
            XCTAssertEqual(ds.classNames, ["nature", "faces", "städte"])
            XCTAssertEqual(ds.className(2), "städte")
            XCTAssertEqual(ds.fileSize, bytes.count)
            for (i, im) in imgs.enumerated() {
                XCTAssertEqual(ds.width(i), im.w)
                XCTAssertEqual(ds.height(i), im.h)
                XCTAssertEqual(ds.classID(i), im.cls)
                XCTAssertEqual(ds.sourceID(i), i * 10)
                XCTAssertEqual(ds.groupID(i), i)
                XCTAssertEqual(ds.flags(i), UInt16(i & 1))
                XCTAssertEqual(Array(ds.pixels(i)), im.px)
                XCTAssertTrue(ds.checksumMatches(i))
                XCTAssertEqual(ds.info(i).offset % RTDS.dataAlignment, 0)
            }
        }
    }

    /// The Swift writer produces byte for byte what python/reptok/build_dataset.py's write_rtds writes
    /// for the same two images (reference: 320 bytes, CRC-32 0xC3B12B6D, computed with Python).
    func testWriterMatchesPythonTool() throws {
        var w = try PackedDatasetWriter(classNames: ["a", "bc"])
        try w.append(width: 2, height: 1, classID: 1, pixels: [1, 2, 3, 4, 5, 6], sourceID: 3, groupID: 7, flags: 1)
        try w.append(width: 1, height: 3, classID: 0, pixels: Array(200..<209))
        let b = w.serialized()
        XCTAssertEqual(b.count, 320)
        XCTAssertEqual(CRC32.checksum(b), 0xC3B1_2B6D)
        // explicit layout
        XCTAssertEqual(Array(b[0..<8]), Array("RTDSPACK".utf8))
        XCTAssertEqual(b.u64(16), 2)            // count
        XCTAssertEqual(b.u64(24), 64)           // index
        XCTAssertEqual(b.u64(32), 128)          // names
        XCTAssertEqual(b.u32(40), 7)            // 1+2 + 2+2
        XCTAssertEqual(b.u64(48), 192)          // data, 64-aligned
        XCTAssertEqual(b.u64(56), 320)
        XCTAssertEqual(b.u64(64), 192)          // image 0
        XCTAssertEqual(b.u64(96), 256)          // image 1, aligned
    }

    func testEmptyPack() throws {
        let w = try PackedDatasetWriter(classNames: ["x"])
        let ds = try PackedDataset(bytes: w.serialized())
        XCTAssertEqual(ds.count, 0)
        XCTAssertEqual(ds.classCount, 1)
        XCTAssertThrowsError(try ViewSampler(dataset: ds, batchSize: 1, seed: 0)) {
            XCTAssertEqual($0 as? ViewSamplerError, .emptyDataset)
        }
    }

    func testWriterRejectsBadInput() throws {
        XCTAssertThrowsError(try PackedDatasetWriter(classNames: [""]))
        XCTAssertThrowsError(try PackedDatasetWriter(classNames: [String(repeating: "x", count: 256)]))
        var w = try PackedDatasetWriter(classNames: ["a"])
        XCTAssertThrowsError(try w.append(width: 2, height: 2, classID: 0, pixels: [0, 0, 0]))
        XCTAssertThrowsError(try w.append(width: 0, height: 1, classID: 0, pixels: []))
        XCTAssertThrowsError(try w.append(width: 1, height: 1, classID: 1, pixels: [0, 0, 0]))
        XCTAssertThrowsError(try w.append(width: 1, height: 1, classID: 0, pixels: [0, 0, 0], flags: 0x100))
        XCTAssertEqual(w.count, 0)
    }

    func testFileErrors() throws {
        XCTAssertThrowsError(try PackedDataset(path: tempPath("does-not-exist.rtds"))) {
            guard case .io = $0 as? PackedDatasetError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try PackedDataset(path: FileManager.default.temporaryDirectory.path)) {
            guard case .io = $0 as? PackedDatasetError else { return XCTFail("\($0)") }
        }
        let short = tempPath("short.rtds")
        try Data(Array("RTDSPACK".utf8)).write(to: URL(fileURLWithPath: short))
        XCTAssertThrowsError(try PackedDataset(path: short)) {
            guard case .invalid = $0 as? PackedDatasetError else { return XCTFail("\($0)") }
        }
    }

    /// Handcrafted corruptions of header, names and index: each is rejected with .invalid.
    func testCorruptionsRejected() throws {
        let (good, _) = try samplePack()
        let count = Int(good.u64(16)), indexOff = Int(good.u64(24)), namesOff = Int(good.u64(32))
        let dataOff = Int(good.u64(48))
        let e1 = indexOff + 32, e2 = indexOff + 64
        let cases: [(String, (inout [UInt8]) -> Void)] = [
            ("magic", { $0[0] = UInt8(ascii: "X") }),
            ("version 2", { $0.putU32(8, 2) }),
            ("version 0", { $0.putU32(8, 0) }),
            ("header size", { $0.putU32(12, 63) }),
            ("count over cap", { $0.putU64(16, UInt64(RTDS.maxCount) + 1) }),
            ("count huge", { $0.putU64(16, .max) }),
            ("count past file", { $0.putU64(16, UInt64(count + 1000)) }),
            ("index in header", { $0.putU64(24, 32) }),
            ("index offset huge", { $0.putU64(24, .max) }),
            ("names overlap index", { $0.putU64(32, UInt64(namesOff - 1)) }),
            ("names size huge", { $0.putU32(40, .max) }),
            ("names size short", { $0.putU32(40, $0.u32(40) - 1) }),
            ("names size long", { $0.putU32(40, $0.u32(40) + 1) }),
            ("class count 0", { $0.putU32(44, 0) }),
            ("class count 4", { $0.putU32(44, 4) }),
            ("class count over cap", { $0.putU32(44, 70_000) }),
            ("data overlaps names", { $0.putU64(48, UInt64(namesOff)) }),
            ("data offset huge", { $0.putU64(48, .max) }),
            ("file size", { $0.putU64(56, $0.u64(56) + 1) }),
            ("file size small", { $0.putU64(56, 64) }),
            ("name length 0", { $0.putU16(namesOff, 0) }),
            ("name length long", { $0.putU16(namesOff, 300) }),
            ("name bad utf8", { $0[namesOff + 2] = 0xFF }),
            ("width 0", { $0.putU32(e1 + 8, 0) }),
            ("height 0", { $0.putU32(e1 + 12, 0) }),
            ("width over cap", { $0.putU32(e1 + 8, UInt32(RTDS.maxSide + 1)) }),
            ("width huge", { $0.putU32(e1 + 8, .max) }),
            ("image past end", { $0.putU32(e2 + 12, 4800) }),
            ("offset past end", { $0.putU64(e2, $0.u64(56) + 64) }),
            ("offset huge", { $0.putU64(e2, .max) }),
            ("offset in names", { $0.putU64(indexOff, UInt64(dataOff - 8)) }),
            ("overlap previous", { $0.putU64(e2, $0.u64(e1)) }),
            ("class out of range", { $0.putU16(e1 + 16, 3) }),
            ("unknown flag", { $0.putU16(e1 + 18, 0x8000) }),
        ]
        for (name, corrupt) in cases {
            var b = good
            corrupt(&b)
            XCTAssertThrowsError(try PackedDataset(bytes: b), name) { err in
                guard case .invalid = err as? PackedDatasetError else { return XCTFail("\(name): \(err)") }
            }
        }
        // a file that is longer than its header says
        XCTAssertThrowsError(try PackedDataset(bytes: good + [0]))
        // a flipped pixel: opens, the checksum check catches it
        var b = good
        b[dataOff] ^= 1
        let ds = try PackedDataset(bytes: b)
        XCTAssertFalse(ds.checksumMatches(0))
        XCTAssertThrowsError(try PackedDataset(bytes: b, verifyChecksums: true))
    }

    /// Every truncation is rejected; every single-bit flip of the header, index and names either
    /// is rejected or yields a pack whose images all lie inside the file; a seeded mutation loop
    /// likewise. None may crash.
    func testTruncationBitFlipsAndFuzz() throws {
        let (good, _) = try samplePack()
        for n in 0..<good.count {
            XCTAssertThrowsError(try PackedDataset(bytes: Array(good[0..<n])), "truncated to \(n)")
        }
        let meta = Int(good.u64(48))   // header + index + names (+ padding)
        func check(_ b: [UInt8]) {
            guard let ds = try? PackedDataset(bytes: b) else { return }
            for i in 0..<ds.count {
                let e = ds.info(i)
                XCTAssertTrue(e.offset >= 64 && e.offset + e.byteCount <= b.count)
                XCTAssertTrue(ds.classID(i) < ds.classCount)
                _ = ds.pixels(i).reduce(0) { $0 &+ Int($1) }
            }
        }
        for bit in 0..<(meta * 8) {
            var b = good
            b[bit / 8] ^= UInt8(1 << (bit % 8))
            check(b)
        }
        var r = TestRNG(42)
        for _ in 0..<3000 {
            var b = good
            for _ in 0..<(1 + r.int(4)) {
                let o = r.int(meta)
                switch r.int(3) {
                case 0: b[o] = r.byte()
                case 1: b[o] = 0xFF
                default: b[o] = 0
                }
            }
            check(b)
        }
    }

    /// The pack the Python builder wrote, when it is there (data/ is built on demand).
    func testPythonBuiltPackIfPresent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let pack = root.appendingPathComponent("data/val.rtds").path
        let json = root.appendingPathComponent("data/val.json")
        guard FileManager.default.fileExists(atPath: pack), let meta = try? Data(contentsOf: json),
              let obj = try? JSONSerialization.jsonObject(with: meta) as? [String: Any] else {
            throw XCTSkip("data/val.rtds not built (PYTHONPATH=python python3 -m reptok.build_dataset --out data/)")
        }
        let ds = try PackedDataset(path: pack, verifyChecksums: true)
        XCTAssertEqual(ds.count, obj["count"] as? Int)
        XCTAssertEqual(ds.classNames, obj["classes"] as? [String])
        let images = obj["images"] as? [[String: Any]] ?? []
        for (i, im) in images.enumerated() {
            XCTAssertEqual(ds.width(i), im["width"] as? Int)
            XCTAssertEqual(ds.height(i), im["height"] as? Int)
            XCTAssertEqual(ds.classID(i), im["class_id"] as? Int)
            XCTAssertEqual(Int(ds.flags(i)), im["flags"] as? Int)
            XCTAssertLessThanOrEqual(min(ds.width(i), ds.height(i)), 512)
        }
    }
}
