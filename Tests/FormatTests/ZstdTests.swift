import RepTokTensor
import RepTokTestSupport
import XCTest
@testable import RepTokFormat

final class ZstdTests: XCTestCase {
    /// Payload-like bytes: a quantized token (small, skewed integers) with a little structure.
    private func tokenLike(_ rng: inout SplitMix64, count: Int = 96) -> [UInt8] {
        (0..<count).map { i in
            let r = rng.next()
            let mag = UInt8(r % 4 == 0 ? (r >> 8) % 16 : (r >> 8) % 3)
            return i % 8 == 0 ? 0x80 | UInt8(i / 8) : (r & (1 << 40) != 0 ? 0x40 | mag : mag)
        }
    }

    func testRoundTripWithoutDictionary() throws {
        var rng = SplitMix64(seed: 3)
        let inputs: [[UInt8]] = [
            [], [42], Array("hello hello hello hello".utf8), tokenLike(&rng),
            [UInt8](repeating: 0, count: 65_536),
            (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &rng) },
        ]
        for input in inputs {
            for magicless in [true, false] {
                let z = try RTKZstd.compress(input, magicless: magicless)
                XCTAssertEqual(z.starts(with: RTKZstd.frameMagic), !magicless)
                XCTAssertEqual(try RTKZstd.decompress(z, magicless: magicless), input)
                XCTAssertEqual(try RTKZstd.compress(input, magicless: magicless), z, "deterministic")
            }
        }
        // The frame header states the size, no checksum, no dictionary ID: tiny frames.
        let z = try RTKZstd.compress([UInt8](repeating: 7, count: 100))
        XCTAssertLessThanOrEqual(z.count, 12)
    }

    func testCapIsExactAndCheckedFirst() throws {
        let input = [UInt8](repeating: 1, count: 5000)
        let z = try RTKZstd.compress(input)
        XCTAssertEqual(try RTKZstd.decompress(z, maxBytes: 5000), input)
        XCTAssertEqual(expectRTKError(try RTKZstd.decompress(z, maxBytes: 4999)),
                       .zstdTooLarge(claimed: 5000, cap: 4999))
        XCTAssertEqual(try [RTKZstd.frameMagic + z].map { f in
            try f.withUnsafeBytes { try RTKZstd.decompressedSize($0, maxBytes: .max) }
        }, [5000])
    }

    func testRoundTripWithRawContentDictionary() throws {
        // Raw-content dictionary: payloads share long runs with it (here a common prefix).
        var rng = SplitMix64(seed: 4)
        let common = tokenLike(&rng, count: 64)
        let dict = (0..<4).flatMap { _ in tokenLike(&rng) } + common
        var withDict = 0, without = 0
        for _ in 0..<50 {
            let input = common + tokenLike(&rng, count: 32)
            let a = try RTKZstd.compress(input, dictionary: dict)
            let b = try RTKZstd.compress(input)
            XCTAssertEqual(try RTKZstd.decompress(a, dictionary: dict), input)
            XCTAssertEqual(try RTKZstd.compress(input, dictionary: dict), a, "deterministic")
            withDict += a.count
            without += b.count
            // Without the dictionary (or with another) the frame fails or decodes to other bytes.
            if let wrong = try? RTKZstd.decompress(a) { XCTAssertNotEqual(wrong, input) }
            if let wrong = try? RTKZstd.decompress(a, dictionary: Array(dict.reversed())) {
                XCTAssertNotEqual(wrong, input)
            }
        }
        XCTAssertLessThan(withDict, without)
    }

    func testTrainedDictionary() throws {
        var rng = SplitMix64(seed: 5)
        let samples = (0..<1000).map { _ in tokenLike(&rng) }
        let dict = try RTKZstd.trainDictionary(samples: samples, maxBytes: 2048)
        XCTAssertFalse(dict.isEmpty)
        XCTAssertLessThanOrEqual(dict.count, 2048)
        XCTAssertEqual(Array(dict.prefix(4)), [0x37, 0xA4, 0x30, 0xEC], "zstd dictionary magic")
        XCTAssertEqual(try RTKZstd.trainDictionary(samples: samples, maxBytes: 2048), dict, "deterministic")
        var withDict = 0, without = 0
        for _ in 0..<100 {
            let input = tokenLike(&rng)
            let z = try RTKZstd.compress(input, dictionary: dict)
            XCTAssertEqual(try RTKZstd.decompress(z, dictionary: dict), input)
            withDict += z.count
            without += try RTKZstd.compress(input).count
        }
        print("zstd: 100 token-like payloads of 96 B: \(without) B plain, \(withDict) B with a trained dictionary")
        XCTAssertLessThan(withDict, without)
    }

    /// Many tiny samples (the shapes of facebook/zstd #4499, where libzstd 1.5.4's default
    /// fastCover trainer reads out of bounds, and a run of ours crashed): the trainer we call
    /// either builds a dictionary or reports an error, and never crashes.
    func testTinySamplesAreSafe() {
        let poc: [[UInt8]] = (0..<8).map { [UInt8(65 + $0)] }
        if let d = try? RTKZstd.trainDictionary(samples: poc, maxBytes: 1024) { XCTAssertLessThanOrEqual(d.count, 1024) }
        var rng = SplitMix64(seed: 9)
        for count in [10, 100, 1000, 4410] {
            for width in [1, 2, 3, 5, 7, 9] {
                let samples = (0..<count).map { _ in (0..<Int(rng.next() % UInt64(width) + 1)).map { _ in UInt8(rng.next() % 4) } }
                if let d = try? RTKZstd.trainDictionary(samples: samples, maxBytes: 2048) {
                    XCTAssertLessThanOrEqual(d.count, 2048)
                }
            }
        }
    }

    func testTrainerErrors() {
        XCTAssertEqual(expectRTKError(try RTKZstd.trainDictionary(samples: [], maxBytes: 4096)),
                       .dictionary("no samples to train on"))
        guard case .dictionary? = expectRTKError(try RTKZstd.trainDictionary(samples: [[1, 2, 3]], maxBytes: 10))
        else { return XCTFail() }
        guard case .dictionary? = expectRTKError(try RTKZstd.trainDictionary(samples: [[], []], maxBytes: 4096))
        else { return XCTFail() }
        // Far too little data: zstd refuses; we report it cleanly.
        let e = expectRTKError(try RTKZstd.trainDictionary(samples: [[1, 2, 3, 4, 5, 6, 7, 8, 9]], maxBytes: 4096))
        guard case .dictionary(let why)? = e, why.hasPrefix("training failed") else {
            return XCTFail("\(String(describing: e))")
        }
        XCTAssertFalse(e!.description.contains("\n"))
    }

    // MARK: Hostile frames

    /// A frame header claiming `size` bytes (8-byte content size, single segment), then an
    /// empty last raw block.
    private func claimingFrame(_ size: UInt64) -> [UInt8] {
        var f = RTKZstd.frameMagic + [0xE0]
        for i in 0..<8 { f.append(UInt8(truncatingIfNeeded: size >> UInt64(8 * i))) }
        return f + [0x01, 0x00, 0x00]
    }

    func testDecompressionBombRejectedBeforeAllocation() {
        for claim: UInt64 in [1 << 21, 1 << 40, 1 << 62, .max - 2] {
            let frame = claimingFrame(claim)
            XCTAssertEqual(expectRTKError(try RTKZstd.decompress(frame, magicless: false)),
                           .zstdTooLarge(claimed: claim, cap: RTKZstd.defaultMaxDecompressedBytes))
            XCTAssertEqual(expectRTKError(try RTKZstd.decompress(Array(frame.dropFirst(4)))),
                           .zstdTooLarge(claimed: claim, cap: RTKZstd.defaultMaxDecompressedBytes))
        }
        // A real 2 MiB frame is refused under the default 1 MiB cap.
        let big = try! RTKZstd.compress([UInt8](repeating: 0, count: 2 << 20))
        XCTAssertLessThan(big.count, 200)
        XCTAssertEqual(expectRTKError(try RTKZstd.decompress(big)),
                       .zstdTooLarge(claimed: 2 << 20, cap: RTKZstd.defaultMaxDecompressedBytes))
    }

    func testUnknownContentSizeRejected() {
        // FHD 0x00: no content size, window descriptor 0x00 (1 KiB), empty last raw block.
        let frame = RTKZstd.frameMagic + [0x00, 0x00, 0x01, 0x00, 0x00]
        XCTAssertEqual(expectRTKError(try RTKZstd.decompress(frame, magicless: false)), .zstdUnknownContentSize)
    }

    func testCorruptedFramesRejected() throws {
        var rng = SplitMix64(seed: 6)
        let input = tokenLike(&rng, count: 300)
        let z = try RTKZstd.compress(input)

        // Truncated at every length.
        for cut in 0..<z.count {
            XCTAssertNotNil(expectRTKError(try RTKZstd.decompress(Array(z.prefix(cut)))), "cut \(cut)")
        }
        // Bytes after the frame, or a second frame.
        XCTAssertEqual(expectRTKError(try RTKZstd.decompress(z + [0])),
                       .zstdTrailingBytes(frameBytes: z.count + 4, total: z.count + 5))
        guard case .zstdTrailingBytes? = expectRTKError(try RTKZstd.decompress(z + RTKZstd.frameMagic + z))
        else { return XCTFail() }
        // Reserved block type (3) in the first block header (after FHD and a 2-byte size).
        var reserved = z
        let fcsBytes = 2  // single segment, 256 <= size < 65792: 2-byte content size
        reserved[1 + fcsBytes] |= 0x06
        XCTAssertNotNil(expectRTKError(try RTKZstd.decompress(reserved)))
        // Not a zstd frame at all, and a skippable frame.
        guard case .zstdNotAFrame? = expectRTKError(try RTKZstd.decompress([0, 1, 2, 3, 4, 5], magicless: false))
        else { return XCTFail() }
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 0x00, 0x00, 0x00, 0x00]
        guard case .zstdNotAFrame? = expectRTKError(try RTKZstd.decompress(skippable, magicless: false))
        else { return XCTFail() }
        // A content size larger than the blocks deliver.
        var short = RTKZstd.frameMagic + [0x20, 10]          // single segment, 1-byte size 10
        short += [0x29, 0x00, 0x00] + [1, 2, 3, 4, 5]         // last raw block of 5 bytes
        XCTAssertNotNil(expectRTKError(try RTKZstd.decompress(short, magicless: false)))
        // Random corruption never crashes (the frame has no checksum of its own: the .rtk
        // record's CRC-32C is what guards payload integrity).
        for _ in 0..<2000 {
            var m = z
            m[Int(rng.next() % UInt64(m.count))] = UInt8(truncatingIfNeeded: rng.next())
            _ = try? RTKZstd.decompress(m, maxBytes: 4096)
        }
    }

    func testPayloadInsideARecord() throws {
        var rng = SplitMix64(seed: 8)
        let token = tokenLike(&rng)
        var record = Fixtures.typical
        record.payload = try RTKZstd.compress(token)
        let parsed = try RTKRecord.parse(try record.serialized())
        XCTAssertEqual(try RTKZstd.decompress(parsed[0].payload, maxBytes: 4096), token)
    }
}
