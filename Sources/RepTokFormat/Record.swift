// .rtk records: one image as a small, checksummed, self-delimiting record. Records concatenate
// into a stream. Layout in Constants.swift and Man/rtk.5.

/// One `.rtk` record: everything needed to decode one image, given the model named by
/// `fingerprint`.
public struct RTKRecord: Hashable, Sendable {
    /// The sampler that integrates the decoder's flow (mode byte, high nibble).
    public enum Sampler: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
        case euler = 0
        case heun = 1

        public var description: String {
            switch self {
            case .euler: return "euler"
            case .heun: return "heun"
            }
        }
    }

    /// 64-bit fingerprint of the model tensors needed to decode (computed by the codec).
    public var fingerprint: UInt64
    /// Original image width in pixels, 1...65535.
    public var width: Int
    /// Original image height in pixels, 1...65535; width * height <= `RTKFormat.maxPixels`.
    public var height: Int
    /// Quantizer level, 1...9.
    public var level: Int
    /// Seed of the decoder's noise (any UInt64; small values take fewer bytes).
    public var seed: UInt64
    /// Sampler of the decoder's flow.
    public var sampler: Sampler
    /// Sampler steps, 1...1000.
    public var steps: Int
    /// Optional name: a plain relative path, 1-255 UTF-8 bytes (see rtk.5, NAMES).
    public var name: String?
    /// Opaque payload, at most 64 KiB (the codec stores a zstd frame without its magic).
    public var payload: [UInt8]
    /// May-ignore flag bits (within `RTKFormat.mayIgnoreFlags`) found on read; kept so the
    /// record re-serializes byte for byte. Writers set 0 unless a later minor revision
    /// defines a hint.
    public var ignorableFlags: UInt8

    public init(fingerprint: UInt64, width: Int, height: Int, level: Int, seed: UInt64,
                sampler: Sampler, steps: Int, name: String? = nil, payload: [UInt8],
                ignorableFlags: UInt8 = 0) {
        self.fingerprint = fingerprint
        self.width = width
        self.height = height
        self.level = level
        self.seed = seed
        self.sampler = sampler
        self.steps = steps
        self.name = name
        self.payload = payload
        self.ignorableFlags = ignorableFlags
    }

    // MARK: Validation

    /// Throws the first field that breaks a format rule (the checks `parse` makes).
    public func validate() throws {
        if ignorableFlags & ~RTKFormat.mayIgnoreFlags != 0 {
            throw RTKError.invalidIgnorableFlags(ignorableFlags)
        }
        func u(_ v: Int) -> UInt64 { v < 0 ? UInt64.max : UInt64(v) }
        try Self.checkFields(level: u(level), samplerID: UInt64(sampler.rawValue),
                             width: u(width), height: u(height), steps: u(steps))
        if let name { try RTKName.validate(name) }
        if payload.count > RTKFormat.maxPayloadBytes {
            throw RTKError.outOfRange(field: "payload length", value: UInt64(payload.count),
                                      range: 0...UInt64(RTKFormat.maxPayloadBytes))
        }
    }

    /// Range checks shared by the reader and the writer. Negative Ints arrive as UInt64.max.
    static func checkFields(level: UInt64, samplerID: UInt64, width: UInt64, height: UInt64,
                            steps: UInt64) throws {
        func check(_ field: String, _ v: UInt64, _ r: ClosedRange<Int>) throws {
            let range = UInt64(r.lowerBound)...UInt64(r.upperBound)
            if !range.contains(v) { throw RTKError.outOfRange(field: field, value: v, range: range) }
        }
        try check("quantizer level", level, RTKFormat.levels)
        if Sampler(rawValue: UInt8(truncatingIfNeeded: samplerID)) == nil || samplerID > 255 {
            throw RTKError.unknownSampler(Int(truncatingIfNeeded: samplerID))
        }
        try check("width", width, 1...RTKFormat.maxDimension)
        try check("height", height, 1...RTKFormat.maxDimension)
        if width * height > UInt64(RTKFormat.maxPixels) {
            throw RTKError.tooManyPixels(width: Int(width), height: Int(height), cap: RTKFormat.maxPixels)
        }
        try check("steps", steps, RTKFormat.steps)
    }

    // MARK: Writing

    /// The flags byte this record is written with.
    var flags: UInt8 { (name != nil ? RTKFormat.flagHasName : 0) | ignorableFlags }

    /// Size of `serialized()` in bytes (for a valid record).
    public var serializedCount: Int {
        var n = RTKFormat.fixedHeaderBytes
        n += RTKVarint.encodedLength(UInt64(max(width, 0)))
        n += RTKVarint.encodedLength(UInt64(max(height, 0)))
        n += RTKVarint.encodedLength(seed)
        n += RTKVarint.encodedLength(UInt64(max(steps, 0)))
        if let name {
            let count = name.utf8.count
            n += RTKVarint.encodedLength(UInt64(count)) + count
        }
        n += RTKVarint.encodedLength(UInt64(payload.count)) + payload.count
        return n + RTKFormat.checksumBytes
    }

    /// The record's bytes, after `validate()`. Deterministic: equal records give equal bytes.
    public func serialized() throws -> [UInt8] {
        var out: [UInt8] = []
        try append(to: &out)
        return out
    }

    /// Validates the record and appends its bytes to `out`.
    public func append(to out: inout [UInt8]) throws {
        try validate()
        let start = out.count
        out.reserveCapacity(start + serializedCount)
        out.append(contentsOf: RTKFormat.magic)
        out.append(RTKFormat.version)
        out.append(flags)
        out.append(UInt8(level) | sampler.rawValue << 4)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: fingerprint >> UInt64(8 * i))) }
        RTKVarint.append(UInt64(width), to: &out)
        RTKVarint.append(UInt64(height), to: &out)
        RTKVarint.append(seed, to: &out)
        RTKVarint.append(UInt64(steps), to: &out)
        if let name {
            let bytes = Array(name.utf8)
            RTKVarint.append(UInt64(bytes.count), to: &out)
            out.append(contentsOf: bytes)
        }
        RTKVarint.append(UInt64(payload.count), to: &out)
        out.append(contentsOf: payload)
        let crc = out.withUnsafeBytes { RTKCRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: crc >> UInt32(8 * i))) }
    }

    /// A stream: the records' bytes, concatenated.
    public static func serialize(_ records: some Sequence<RTKRecord>) throws -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        for record in records {
            index += 1
            let offset = out.count
            do { try record.append(to: &out) } catch let e as RTKError {
                throw RTKError.inRecord(index: index, offset: offset, e)
            }
        }
        return out
    }

    // MARK: Reading

    /// Parses a whole stream: one or more records, back to back, with nothing after the last.
    /// Errors inside record N are wrapped as `.inRecord(index: N, offset:, ...)`; bytes after
    /// the last whole record that do not start with the magic give `.trailingBytes`.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> [RTKRecord] {
        if let r = try bytes.withContiguousStorageIfAvailable({ try parse(UnsafeRawBufferPointer($0)) }) {
            return r
        }
        return try Array(bytes).withUnsafeBytes { try parse($0) }
    }

    /// Parses a whole stream from raw memory.
    public static func parse(_ buffer: UnsafeRawBufferPointer) throws -> [RTKRecord] {
        if buffer.isEmpty { throw RTKError.emptyInput }
        var records: [RTKRecord] = []
        var pos = 0
        while pos < buffer.count {
            let index = records.count + 1
            if index > 1 && !startsLikeRecord(buffer, at: pos) {
                throw RTKError.trailingBytes(offset: pos, count: buffer.count - pos)
            }
            do {
                let (record, end) = try parseRecord(buffer, at: pos)
                records.append(record)
                pos = end
            } catch let e as RTKError {
                if index == 1, case .badMagic = e { throw e }
                throw RTKError.inRecord(index: index, offset: pos, e)
            }
        }
        return records
    }

    /// Parses the record at the start of `bytes`, ignoring what follows it. Errors are not
    /// wrapped; offsets count from the start of `bytes`.
    public static func parseOne(_ bytes: some Collection<UInt8>) throws -> (record: RTKRecord, consumed: Int) {
        if let r = try bytes.withContiguousStorageIfAvailable({ try parseOne(UnsafeRawBufferPointer($0)) }) {
            return r
        }
        return try Array(bytes).withUnsafeBytes { try parseOne($0) }
    }

    /// Parses the record at the start of raw memory.
    public static func parseOne(_ buffer: UnsafeRawBufferPointer) throws -> (record: RTKRecord, consumed: Int) {
        if buffer.isEmpty { throw RTKError.emptyInput }
        let (record, end) = try parseRecord(buffer, at: 0)
        return (record, end)
    }

    /// What a reader that goes on after an error learns from the record starting at `offset`
    /// (rtk.5, DAMAGED STREAMS). Errors are not wrapped; offsets count from the start of `buffer`.
    public static func scan(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> RTKScan {
        var end: Int? = nil
        do {
            let (record, next) = try parseRecord(buffer, at: offset, end: &end)
            return .record(record, size: next - offset)
        } catch let e as RTKError {
            if let end { return .damaged(e, size: end - offset) }
            switch e {
            case .unsupportedVersion, .unknownRequiredFlags: return .undelimitable(e)
            default: return .broken(e)
            }
        } catch {
            preconditionFailure("the .rtk reader threw a non-RTKError: \(error)")
        }
    }

    /// True when the bytes at `pos` are the magic, or a prefix of it that the input cuts off.
    static func startsLikeRecord(_ b: UnsafeRawBufferPointer, at pos: Int) -> Bool {
        let n = min(RTKFormat.magic.count, b.count - pos)
        for i in 0..<n where b[pos + i] != RTKFormat.magic[i] { return false }
        return true
    }

    /// Parses one record starting at `start`; returns it and the offset just past it.
    /// Phase 1 walks the structure (everything needed to find the checksum) and verifies the
    /// checksum; phase 2 checks field values, so corruption reads as a checksum mismatch.
    static func parseRecord(_ b: UnsafeRawBufferPointer, at start: Int) throws -> (RTKRecord, Int) {
        var end: Int? = nil
        return try parseRecord(b, at: start, end: &end)
    }

    /// `parseRecord`, setting `end` to the offset just past the record as soon as phase 1 has
    /// found its checksum (so a checksum or value error leaves the record's extent known).
    static func parseRecord(_ b: UnsafeRawBufferPointer, at start: Int, end: inout Int?) throws -> (RTKRecord, Int) {
        var pos = start

        func need(_ count: Int, _ field: String) throws {
            if b.count - pos < count { throw RTKError.truncated(field: field, offset: pos) }
        }
        func varint(_ field: String) throws -> UInt64 {
            switch RTKVarint.decode(b, at: pos) {
            case .value(let v, let length): pos += length; return v
            case .truncated: throw RTKError.truncated(field: field, offset: pos)
            case .overlong: throw RTKError.overlongVarint(field: field, offset: pos)
            case .overflow: throw RTKError.varintOverflow(field: field, offset: pos)
            }
        }
        func length(_ field: String, cap: Int) throws -> Int {
            let at = pos
            let v = try varint(field + " length")
            if v > UInt64(cap) {
                if field == "name" { throw RTKError.badName(.tooLong(v)) }
                throw RTKError.outOfRange(field: field + " length", value: v, range: 0...UInt64(cap))
            }
            if v > UInt64(b.count - pos) {
                throw RTKError.lengthBeyondEnd(field: field, offset: at, length: v, available: b.count - pos)
            }
            return Int(v)
        }

        // Phase 1: structure.
        if !startsLikeRecord(b, at: pos) { throw RTKError.badMagic(offset: pos) }
        try need(RTKFormat.magic.count, "magic")
        pos += RTKFormat.magic.count
        try need(1, "version")
        let version = b[pos]
        if version != RTKFormat.version { throw RTKError.unsupportedVersion(Int(version)) }
        pos += 1
        try need(1, "flags")
        let flags = b[pos]
        if flags & RTKFormat.mustRejectFlags != 0 {
            throw RTKError.unknownRequiredFlags(flags & RTKFormat.mustRejectFlags)
        }
        pos += 1
        try need(1, "mode")
        let mode = b[pos]
        pos += 1
        try need(8, "fingerprint")
        var fingerprint: UInt64 = 0
        for i in 0..<8 { fingerprint |= UInt64(b[pos + i]) << UInt64(8 * i) }
        pos += 8
        let width = try varint("width")
        let height = try varint("height")
        let seed = try varint("seed")
        let steps = try varint("steps")
        var nameRange: Range<Int>? = nil
        if flags & RTKFormat.flagHasName != 0 {
            let n = try length("name", cap: RTKFormat.maxNameBytes)
            if n == 0 { throw RTKError.badName(.empty) }
            nameRange = pos..<(pos + n)
            pos += n
        }
        let payloadCount = try length("payload", cap: RTKFormat.maxPayloadBytes)
        let payloadRange = pos..<(pos + payloadCount)
        pos += payloadCount
        try need(RTKFormat.checksumBytes, "checksum")
        end = pos + RTKFormat.checksumBytes
        var stored: UInt32 = 0
        for i in 0..<4 { stored |= UInt32(b[pos + i]) << UInt32(8 * i) }
        let computed = RTKCRC32C.checksum(UnsafeRawBufferPointer(rebasing: b[start..<pos]))
        if stored != computed { throw RTKError.checksumMismatch(stored: stored, computed: computed) }
        pos += RTKFormat.checksumBytes

        // Phase 2: values.
        try checkFields(level: UInt64(mode & 0x0F), samplerID: UInt64(mode >> 4),
                        width: width, height: height, steps: steps)
        var name: String? = nil
        if let nameRange { name = try RTKName.validate(UnsafeRawBufferPointer(rebasing: b[nameRange])) }
        let record = RTKRecord(
            fingerprint: fingerprint, width: Int(width), height: Int(height), level: Int(mode & 0x0F),
            seed: seed, sampler: Sampler(rawValue: mode >> 4)!, steps: Int(steps), name: name,
            payload: Array(UnsafeRawBufferPointer(rebasing: b[payloadRange])),
            ignorableFlags: flags & RTKFormat.mayIgnoreFlags)
        return (record, pos)
    }
}

/// The record at one offset of a stream, as `RTKRecord.scan` finds it: what a reader that goes
/// on after an error may do next (rtk.5, DAMAGED STREAMS).
public enum RTKScan: Equatable, Sendable {
    /// A valid record of `size` bytes.
    case record(RTKRecord, size: Int)
    /// The structure is intact (phase 1 reached the checksum) but the checksum or a value is
    /// wrong: the record spans `size` bytes by its own lengths, and its bytes are no records.
    case damaged(RTKError, size: Int)
    /// The structure is broken before the checksum (malformed varint, a length over its cap or
    /// past the end, an empty name, truncation): the record's end is unknown.
    case broken(RTKError)
    /// An unknown version or must-reject flags: the layout is unknown, so neither the record's
    /// end nor anything after it can be delimited.
    case undelimitable(RTKError)
}

/// Shorter spelling of `RTKRecord.Sampler`.
public typealias RTKSampler = RTKRecord.Sampler
