// zstd helpers for .rtk payloads: the stable libzstd API for compression (ZSTD_STATIC_LINKING_ONLY
// is not defined in the CZstd shim), and for dictionaries zdict.h's static-only
// ZDICT_trainFromBuffer_fastCover (ZDICT_STATIC_LINKING_ONLY is defined there; libzstd.so
// exports it), see `trainDictionary`.
//
// Frames are written with the content size in the header, no content checksum (the record's
// CRC-32C covers the payload) and no dictionary ID (the model fingerprint names the
// dictionary), at a fixed level, so equal inputs give equal bytes for a given libzstd.
// "Magicless" frames (the default here) drop the 4-byte zstd magic 28 B5 2F FD on write and
// put it back on read: the stable API has no magicless format, and the bytes are known.
// Decompression reads the frame header first and refuses an unknown or over-cap content size
// before allocating anything (no decompression bombs).

import CZstd

/// zstd compression of record payloads, with optional dictionaries.
public enum RTKZstd {
    /// The compression level every payload is written with.
    public static let compressionLevel: Int32 = 19
    /// Default cap on a decompressed payload.
    public static let defaultMaxDecompressedBytes = 1 << 20
    /// The zstd frame magic, little-endian bytes of 0xFD2FB528.
    public static let frameMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
    /// Smallest useful dictionary (ZDICT_DICTSIZE_MIN).
    public static let minDictionaryBytes = 256
    /// Largest dictionary `trainDictionary` will build.
    public static let maxDictionaryBytes = 1 << 20

    private static let contentSizeUnknown = UInt64.max        // ZSTD_CONTENTSIZE_UNKNOWN
    private static let contentSizeError = UInt64.max - 1      // ZSTD_CONTENTSIZE_ERROR

    private static func errorName(_ code: Int) -> String {
        String(cString: ZSTD_getErrorName(code))
    }

    private static func check(_ code: Int, _ operation: String) throws {
        if ZSTD_isError(code) != 0 { throw RTKError.zstd(operation: operation, message: errorName(code)) }
    }

    // MARK: Compression

    /// Compresses `input` into one zstd frame (level `compressionLevel`, content size stored,
    /// no checksum, no dictionary ID). With `magicless` (default) the 4-byte frame magic is
    /// left out. `dictionary` is a trained zstd dictionary or raw content; the same bytes
    /// must be given to `decompress`.
    public static func compress(_ input: [UInt8], dictionary: [UInt8]? = nil,
                                magicless: Bool = true) throws -> [UInt8] {
        guard let cctx = ZSTD_createCCtx() else {
            throw RTKError.zstd(operation: "compression", message: "out of memory")
        }
        defer { ZSTD_freeCCtx(cctx) }
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, compressionLevel), "setting the level")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1), "setting contentSizeFlag")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0), "setting checksumFlag")
        try check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0), "setting dictIDFlag")
        if let dictionary, !dictionary.isEmpty {
            try dictionary.withUnsafeBytes {
                try check(ZSTD_CCtx_loadDictionary(cctx, $0.baseAddress, $0.count), "loading the dictionary")
            }
        }
        let bound = ZSTD_compressBound(input.count)
        try check(bound, "sizing the output")
        var out = [UInt8](repeating: 0, count: bound)
        let written = try out.withUnsafeMutableBytes { dst in
            try input.withUnsafeBytes { src in
                let n = ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count)
                try check(n, "compression")
                return n
            }
        }
        out.removeSubrange(written...)
        if magicless {
            precondition(out.starts(with: frameMagic), "libzstd wrote a frame without the zstd magic")
            out.removeFirst(frameMagic.count)
        }
        return out
    }

    // MARK: Decompression

    /// The decompressed size a frame header states, after checking it is one whole frame with
    /// nothing after it and a known size no larger than `maxBytes`. Allocates nothing.
    public static func decompressedSize(_ frame: UnsafeRawBufferPointer, maxBytes: Int) throws -> Int {
        if frame.count < frameMagic.count || !frame.starts(with: frameMagic) {
            throw RTKError.zstdNotAFrame(frame.count < 4 ? "too short" : "bad zstd magic")
        }
        let size = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if size == contentSizeError {
            throw RTKError.zstdNotAFrame("unreadable frame header")
        }
        if size == contentSizeUnknown { throw RTKError.zstdUnknownContentSize }
        if size > UInt64(max(maxBytes, 0)) { throw RTKError.zstdTooLarge(claimed: size, cap: maxBytes) }
        let frameBytes = ZSTD_findFrameCompressedSize(frame.baseAddress, frame.count)
        if ZSTD_isError(frameBytes) != 0 {
            throw RTKError.zstdNotAFrame(errorName(frameBytes))
        }
        if frameBytes != frame.count {
            throw RTKError.zstdTrailingBytes(frameBytes: frameBytes, total: frame.count)
        }
        return Int(size)
    }

    /// Decompresses one frame written by `compress`, refusing (before allocating) a frame
    /// whose header does not state its size or states more than `maxBytes`.
    public static func decompress(_ input: [UInt8], dictionary: [UInt8]? = nil,
                                  maxBytes: Int = defaultMaxDecompressedBytes,
                                  magicless: Bool = true) throws -> [UInt8] {
        if magicless {
            return try decompressFrame(frameMagic + input, dictionary: dictionary, maxBytes: maxBytes)
        }
        return try decompressFrame(input, dictionary: dictionary, maxBytes: maxBytes)
    }

    private static func decompressFrame(_ frame: [UInt8], dictionary: [UInt8]?, maxBytes: Int) throws -> [UInt8] {
        let size = try frame.withUnsafeBytes { try decompressedSize($0, maxBytes: maxBytes) }
        guard let dctx = ZSTD_createDCtx() else {
            throw RTKError.zstd(operation: "decompression", message: "out of memory")
        }
        defer { ZSTD_freeDCtx(dctx) }
        // One spare byte keeps the buffer non-empty; capacity passed to zstd is exactly `size`.
        var out = [UInt8](repeating: 0, count: size + 1)
        let got = try out.withUnsafeMutableBytes { dst in
            try frame.withUnsafeBytes { src in
                let dict = dictionary ?? []
                let n = dict.withUnsafeBytes { d in
                    ZSTD_decompress_usingDict(dctx, dst.baseAddress, size, src.baseAddress, src.count,
                                              d.count > 0 ? d.baseAddress : nil, d.count)
                }
                try check(n, "decompression")
                return n
            }
        }
        if got != size { throw RTKError.zstdSizeMismatch(expected: size, got: got) }
        out.removeLast()
        return out
    }

    // MARK: Dictionaries

    /// Trains a zstd dictionary of at most `maxBytes` from `samples` (fastCover with fixed
    /// parameters; deterministic). zstd wants many samples (hundreds) totalling ~100x the dictionary.
    public static func trainDictionary(samples: [[UInt8]], maxBytes: Int) throws -> [UInt8] {
        if samples.isEmpty { throw RTKError.dictionary("no samples to train on") }
        if maxBytes < minDictionaryBytes || maxBytes > maxDictionaryBytes {
            throw RTKError.dictionary("size \(maxBytes) is outside \(minDictionaryBytes)...\(maxDictionaryBytes)")
        }
        let total = samples.reduce(0) { $0 + $1.count }
        if total == 0 { throw RTKError.dictionary("all \(samples.count) samples are empty") }
        if total >= Int(UInt32.max) { throw RTKError.dictionary("samples total \(total) bytes, over 4 GiB") }
        // libzstd's fastCover trainer (ZDICT_trainFromBuffer's default) reads past the end of
        // the samples when they are small: its last epoch is not clamped to the data (up to one
        // epoch, at most the total size) and it hashes 8-byte words near the end (facebook/zstd
        // #4499, fixed upstream after 1.5.7; Debian bookworm ships 1.5.4). We crashed on it when
        // the samples ended at a page boundary. Zero slack of the total size + 64 bytes after the
        // last sample keeps every such read inside our buffer and makes its result deterministic
        // (what lies past the data is always zeros). The sizes passed exclude the slack.
        let joined = samples.flatMap { $0 } + [UInt8](repeating: 0, count: total + 64)
        let sizes = samples.map { Int($0.count) }
        // fastCover with fixed parameters, not ZDICT_trainFromBuffer's parameter search: the
        // search holds out a quarter of the samples (splitPoint 0.75), the path where small
        // training sets underflow a size (facebook/zstd #4710); with every sample used for
        // training (splitPoint 1) that subtraction cannot go below zero. k = 64, d = 8 suit
        // token payloads of tens of bytes.
        var params = ZDICT_fastCover_params_t()
        params.k = 64; params.d = 8; params.f = 20; params.steps = 0; params.nbThreads = 1
        params.splitPoint = 1.0; params.accel = 1
        var dict = [UInt8](repeating: 0, count: maxBytes)
        let n = dict.withUnsafeMutableBytes { d in
            joined.withUnsafeBytes { s in
                sizes.withUnsafeBufferPointer { z in
                    ZDICT_trainFromBuffer_fastCover(d.baseAddress, d.count, s.baseAddress, z.baseAddress,
                                                    UInt32(samples.count), params)
                }
            }
        }
        if ZDICT_isError(n) != 0 {
            let why = String(cString: ZDICT_getErrorName(n))
            throw RTKError.dictionary("training failed: \(why) (\(samples.count) samples, \(total) bytes; give more or larger samples)")
        }
        dict.removeSubrange(n...)
        return dict
    }
}
