import RepTokTensor
import RepTokTestSupport
import Foundation
import XCTest
import RepTokData

/// Deterministic test bytes (SplitMix64).
typealias TestRNG = SplitMix64

func randomPixels(_ w: Int, _ h: Int, seed: UInt64) -> [UInt8] {
    var r = TestRNG(seed)
    return (0..<(w * h * 3)).map { _ in r.byte() }
}

func tempPath(_ name: String) -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reptok-datatests-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// A small pack: 4 images of assorted sizes and classes.
func samplePack() throws -> (bytes: [UInt8], images: [(w: Int, h: Int, cls: Int, px: [UInt8])]) {
    var w = try PackedDatasetWriter(classNames: ["nature", "faces", "städte"])
    let imgs: [(w: Int, h: Int, cls: Int, px: [UInt8])] = [
        (5, 3, 0, randomPixels(5, 3, seed: 1)),
        (1, 1, 2, [9, 8, 7]),
        (64, 48, 1, randomPixels(64, 48, seed: 2)),
        (17, 29, 0, randomPixels(17, 29, seed: 3)),
    ]
    for (k, im) in imgs.enumerated() {
        try w.append(width: im.w, height: im.h, classID: im.cls, pixels: im.px, sourceID: k * 10, groupID: k,
                     flags: UInt16(k & 1))
    }
    return (w.serialized(), imgs)
}

extension Array where Element == UInt8 {
    mutating func putU16(_ o: Int, _ v: UInt16) { for k in 0..<2 { self[o + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
    mutating func putU32(_ o: Int, _ v: UInt32) { for k in 0..<4 { self[o + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
    mutating func putU64(_ o: Int, _ v: UInt64) { for k in 0..<8 { self[o + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) } }
    func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(self[o + $1]) << (8 * $1) } }
    func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(self[o + $1]) << (8 * $1) } }
}
