import Foundation

/// Writes .rtds packs with exactly the layout of python/reptok/build_dataset.py (64-byte aligned data
/// area and images, CRC-32 per image): for tests, tools and small user datasets. Images are held
/// in memory until `serialized()` / `write(to:)`.
public struct PackedDatasetWriter {
    public let classNames: [String]
    private var infos: [PackedImageInfo] = []
    private var images: [[UInt8]] = []

    public init(classNames: [String]) throws {
        guard classNames.count <= RTDS.maxClasses else {
            throw PackedDatasetError.invalid("\(classNames.count) classes, over the cap \(RTDS.maxClasses)")
        }
        for n in classNames where n.utf8.isEmpty || n.utf8.count > RTDS.maxClassNameBytes {
            throw PackedDatasetError.invalid("class name '\(n)' must be 1...\(RTDS.maxClassNameBytes) UTF-8 bytes")
        }
        self.classNames = classNames
    }

    public var count: Int { images.count }

    /// Adds one image: `pixels` is height x width x 3 bytes, row-major RGB.
    public mutating func append(width: Int, height: Int, classID: Int, pixels: [UInt8],
                                sourceID: Int = 0, groupID: Int = 0, flags: UInt16 = 0) throws {
        guard (1...RTDS.maxSide).contains(width), (1...RTDS.maxSide).contains(height) else {
            throw PackedDatasetError.invalid("image is \(width)x\(height)")
        }
        guard pixels.count == width * height * 3 else {
            throw PackedDatasetError.invalid("\(pixels.count) pixel bytes for \(width)x\(height)x3")
        }
        guard classID >= 0, classID < classNames.count else { throw PackedDatasetError.invalid("class \(classID)") }
        guard flags & ~RTDS.Flag.known == 0 else { throw PackedDatasetError.invalid("unknown flags \(flags)") }
        guard (0...Int(UInt32.max)).contains(sourceID), (0...Int(UInt32.max)).contains(groupID) else {
            throw PackedDatasetError.invalid("source/group id out of range")
        }
        guard images.count < RTDS.maxCount else { throw PackedDatasetError.invalid("too many images") }
        infos.append(PackedImageInfo(offset: 0, width: width, height: height, classID: classID, flags: flags,
                                     sourceID: sourceID, groupID: groupID, crc32: CRC32.checksum(pixels)))
        images.append(pixels)
    }

    /// The whole pack.
    public func serialized() -> [UInt8] {
        func align(_ v: Int) -> Int { (v + RTDS.dataAlignment - 1) / RTDS.dataAlignment * RTDS.dataAlignment }
        var names = [UInt8]()
        for n in classNames {
            let u = Array(n.utf8)
            names += [UInt8(u.count & 0xFF), UInt8(u.count >> 8)] + u
        }
        let count = images.count
        let indexOff = RTDS.headerSize
        let namesOff = indexOff + RTDS.entrySize * count
        let dataOff = align(namesOff + names.count)
        var offsets = [Int](), pos = dataOff
        for img in images { offsets.append(pos); pos = align(pos + img.count) }
        let fileSize = pos

        var out = [UInt8]()
        out.reserveCapacity(fileSize)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out += RTDS.magic
        put(RTDS.version); put(UInt32(RTDS.headerSize)); put(UInt64(count)); put(UInt64(indexOff))
        put(UInt64(namesOff)); put(UInt32(names.count)); put(UInt32(classNames.count))
        put(UInt64(dataOff)); put(UInt64(fileSize))
        for (e, off) in zip(infos, offsets) {
            put(UInt64(off)); put(UInt32(e.width)); put(UInt32(e.height)); put(UInt16(e.classID)); put(e.flags)
            put(UInt32(e.sourceID)); put(UInt32(e.groupID)); put(e.crc32)
        }
        out += names
        out += [UInt8](repeating: 0, count: dataOff - out.count)
        for img in images {
            out += img
            out += [UInt8](repeating: 0, count: align(out.count) - out.count)
        }
        precondition(out.count == fileSize)
        return out
    }

    /// Writes the pack to `path` (a temporary file in the same folder, then rename).
    public func write(to path: String) throws {
        let url = URL(fileURLWithPath: path)
        do {
            try Data(serialized()).write(to: url, options: .atomic)
        } catch {
            throw PackedDatasetError.io("cannot write \(path): \(error)")
        }
    }
}
