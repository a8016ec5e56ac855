// Reading a .rtk stream record by record, so that one corrupt record does not hide the others.
//
// The stream is parsed with RTKRecord.parseOne. A corrupt record is reported and reading goes on
// at the next occurrence of the magic after its first byte (the checksum makes a false match
// inside a payload fail cleanly). Bytes that do not begin a record are reported once and
// skipped the same way. An input that does not begin with the magic is not an .rtk file at all:
// one error, nothing is searched.

import RepTokFormat

/// A valid record found in a stream.
public struct StreamRecord: Sendable {
    /// 1-based position in the stream, counting corrupt records too.
    public var index: Int
    /// Byte offset of the record.
    public var offset: Int
    /// Serialized size.
    public var size: Int
    public var record: RTKRecord
}

/// The valid records of an input and one message per problem.
public struct ParsedStream: Sendable {
    public var records: [StreamRecord] = []
    public var errors: [String] = []
    /// Records that began with the magic but did not parse.
    public var corruptRecords = 0

    /// Parses `bytes`.
    public init(_ bytes: [UInt8]) {
        if bytes.isEmpty { errors.append(RTKError.emptyInput.description); return }
        bytes.withUnsafeBytes { buf in
            var pos = 0
            var index = 0
            while pos < buf.count {
                if !ParsedStream.startsLikeRecord(buf, pos) {
                    if pos == 0 {
                        errors.append(RTKError.badMagic(offset: 0).description)
                        return
                    }
                    let next = ParsedStream.nextMagic(buf, after: pos) ?? buf.count
                    errors.append(RTKError.trailingBytes(offset: pos, count: next - pos).description)
                    pos = next
                    continue
                }
                index += 1
                do {
                    let (record, consumed) = try RTKRecord.parseOne(UnsafeRawBufferPointer(rebasing: buf[pos...]))
                    records.append(StreamRecord(index: index, offset: pos, size: consumed, record: record))
                    pos += consumed
                } catch let e as RTKError {
                    corruptRecords += 1
                    errors.append(RTKError.inRecord(index: index, offset: pos, e).description)
                    pos = ParsedStream.nextMagic(buf, after: pos) ?? buf.count
                } catch {
                    corruptRecords += 1
                    errors.append("record \(index) (byte \(pos)): \(error)")
                    pos = ParsedStream.nextMagic(buf, after: pos) ?? buf.count
                }
            }
        }
    }

    public var isClean: Bool { errors.isEmpty }

    /// Records in the stream, valid or corrupt (stray bytes are not records).
    public var recordCount: Int { records.count + corruptRecords }

    /// The magic, or a prefix of it cut off by the end of the input, at `pos`.
    static func startsLikeRecord(_ b: UnsafeRawBufferPointer, _ pos: Int) -> Bool {
        let magic = RTKFormat.magic
        let n = min(magic.count, b.count - pos)
        for i in 0..<n where b[pos + i] != magic[i] { return false }
        return true
    }

    /// The offset of the next full magic strictly after `pos`.
    static func nextMagic(_ b: UnsafeRawBufferPointer, after pos: Int) -> Int? {
        let magic = RTKFormat.magic
        var i = pos + 1
        while i + magic.count <= b.count {
            if b[i] == magic[0] && b[i + 1] == magic[1] && b[i + 2] == magic[2] { return i }
            i += 1
        }
        return nil
    }
}
