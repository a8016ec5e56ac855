// Reading a .rtk stream record by record, so that one corrupt record does not hide the others.
//
// The policy is rtk(5)'s DAMAGED STREAMS (RTKRecord.scan tells the cases apart):
// - a record whose structure is intact (phase 1 reached its checksum) but whose checksum or
//   values are wrong is skipped by its own lengths, so the bytes inside it are never read as
//   records (no "ghost" record from inside its payload);
// - a record whose structure is broken has no known end: reading goes on at the next occurrence
//   of the magic after its first byte;
// - a record of an unknown version or with must-reject flags cannot be delimited at all, nor can
//   anything after it: reading stops there;
// - bytes that do not begin a record are reported once and skipped to the next magic.
// An input that does not begin with the magic is not an .rtk file at all: one error, nothing is
// searched.

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
    /// One problem of the input, in input order.
    public struct Problem: Sendable {
        public var message: String
        /// True for a record that did not parse; false for bytes that are no record at all
        /// (an input that is not an .rtk file, stray bytes between or after records).
        public var isRecord: Bool
    }

    public var records: [StreamRecord] = []
    public var problems: [Problem] = []
    /// Records that began with the magic but did not parse.
    public var corruptRecords = 0

    /// Parses `bytes`.
    public init(_ bytes: [UInt8]) {
        if bytes.isEmpty { problems.append(Problem(message: RTKError.emptyInput.description, isRecord: false)); return }
        bytes.withUnsafeBytes { buf in
            var pos = 0
            var index = 0
            while pos < buf.count {
                if !ParsedStream.startsLikeRecord(buf, pos) {
                    if pos == 0 {
                        problems.append(Problem(message: RTKError.badMagic(offset: 0).description, isRecord: false))
                        return
                    }
                    let next = ParsedStream.nextMagic(buf, after: pos) ?? buf.count
                    problems.append(Problem(message: RTKError.trailingBytes(offset: pos, count: next - pos).description,
                                            isRecord: false))
                    pos = next
                    continue
                }
                index += 1
                func corrupt(_ e: RTKError, _ note: String = "") {
                    corruptRecords += 1
                    problems.append(Problem(message: RTKError.inRecord(index: index, offset: pos, e).description + note,
                                            isRecord: true))
                }
                switch RTKRecord.scan(buf, at: pos) {
                case .record(let record, let size):
                    records.append(StreamRecord(index: index, offset: pos, size: size, record: record))
                    pos += size
                case .damaged(let e, let size):
                    corrupt(e)
                    pos += size
                case .broken(let e):
                    corrupt(e)
                    pos = ParsedStream.nextMagic(buf, after: pos) ?? buf.count
                case .undelimitable(let e):
                    let rest = buf.count - pos
                    corrupt(e, "; its length is unknown, so the last \(rest) byte\(rest == 1 ? "" : "s") of the input "
                               + "\(rest == 1 ? "is" : "are") not read")
                    return
                }
            }
        }
    }

    /// The problems' messages, in input order.
    public var errors: [String] { problems.map(\.message) }

    public var isClean: Bool { problems.isEmpty }

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
