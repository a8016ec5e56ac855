// Strict parsing and validation of a safetensors header.
//
// The JSON parser is RFC 8259 strict (no comments, no trailing commas, no leading zeros, no bare
// control characters, only the standard escapes, surrogate pairs must pair up) and, unlike
// JSONSerialization, rejects duplicate keys. Nesting depth, string length and number length are
// capped (SafeTensorsLimits). Numbers are integers that fit Int, or their text (JSON.swift has
// the value type and its writers).

struct ParsedSafeTensors {
    var dataStart: Int
    var metadata: [String: String]
    var tensors: [TensorInfo]
}

/// Validates the framing, header and offsets of a whole safetensors file.
func parseSafeTensors(_ file: UnsafeRawBufferPointer, limits: SafeTensorsLimits) throws -> ParsedSafeTensors {
    let size = file.count
    guard size >= 8 else { throw SafeTensorsError.fileTooShort(size: size) }
    let n = UInt64(littleEndian: file.loadUnaligned(as: UInt64.self))
    if n > UInt64(max(limits.maxHeaderBytes, 0)) {
        throw SafeTensorsError.headerTooLarge(length: n, limit: limits.maxHeaderBytes)
    }
    if n > UInt64(size - 8) { throw SafeTensorsError.headerBeyondFile(length: n, fileSize: size) }
    let headerLength = Int(n)
    let dataStart = 8 + headerLength
    let dataSize = size - dataStart
    let header = UnsafeRawBufferPointer(rebasing: file[8..<dataStart])
    if let bad = firstInvalidUTF8(header) { throw SafeTensorsError.headerNotUTF8(offset: bad) }

    var parser = JSONParser(header, limits: limits)
    parser.skipWhitespace()
    guard let first = parser.peek() else { throw parser.fail("empty header") }
    if first != UInt8(ascii: "{") {
        let v = try parser.parseValue(depth: 0)
        try parser.expectEnd()
        throw SafeTensorsError.headerNotObject(found: v.kind)
    }
    parser.i += 1

    var tensors: [TensorInfo] = []
    var seen = Set<String>()
    var metadata: [String: String] = [:]
    parser.skipWhitespace()
    if parser.peek() == UInt8(ascii: "}") {
        parser.i += 1
    } else {
        while true {
            parser.skipWhitespace()
            guard parser.peek() == UInt8(ascii: "\"") else { throw parser.fail("expected a string key") }
            let keyOffset = parser.i
            let key = try parser.parseString()
            let isMetadata = key == "__metadata__"
            if !seen.insert(key).inserted {
                throw isMetadata ? SafeTensorsError.duplicateKey(key: key, offset: keyOffset)
                                 : SafeTensorsError.duplicateTensorName(key)
            }
            if !isMetadata && tensors.count >= limits.maxTensors {
                throw SafeTensorsError.tooManyTensors(limit: limits.maxTensors)
            }
            parser.skipWhitespace()
            guard parser.peek() == UInt8(ascii: ":") else { throw parser.fail("expected ':' after a key") }
            parser.i += 1
            let value = try parser.parseValue(depth: 1)
            if isMetadata {
                metadata = try interpretMetadata(value)
            } else {
                tensors.append(try interpretEntry(key, value, limits: limits, dataSize: dataSize))
            }
            parser.skipWhitespace()
            switch parser.peek() {
            case UInt8(ascii: ","): parser.i += 1; continue
            case UInt8(ascii: "}"): parser.i += 1
            default: throw parser.fail("expected ',' or '}' in the header object")
            }
            break
        }
    }
    try parser.expectEnd()

    // The tensors, sorted by offsets, must tile [0, dataSize) exactly.
    let order = tensors.indices.sorted { a, b in
        let x = tensors[a].byteRange, y = tensors[b].byteRange
        if x.lowerBound != y.lowerBound { return x.lowerBound < y.lowerBound }
        if x.upperBound != y.upperBound { return x.upperBound < y.upperBound }
        return utf8Less(tensors[a].name, tensors[b].name)
    }
    var expected = 0
    var previous = ""
    for k in order {
        let t = tensors[k]
        let begin = t.byteRange.lowerBound
        if begin < expected {
            throw SafeTensorsError.offsetsOverlap(tensor: t.name, previous: previous, begin: begin, previousEnd: expected)
        }
        if begin > expected { throw SafeTensorsError.offsetsGap(tensor: t.name, begin: begin, expected: expected) }
        expected = t.byteRange.upperBound
        previous = t.name
    }
    if expected != dataSize { throw SafeTensorsError.dataNotCovered(coveredEnd: expected, dataSize: dataSize) }
    return ParsedSafeTensors(dataStart: dataStart, metadata: metadata, tensors: tensors)
}

private func interpretMetadata(_ value: JSONValue) throws -> [String: String] {
    guard case let .object(members) = value else { throw SafeTensorsError.metadataNotObject(found: value.kind) }
    var out = [String: String](minimumCapacity: members.count)
    for (k, v) in members {
        guard case let .string(s) = v else { throw SafeTensorsError.metadataValueNotString(key: k, found: v.kind) }
        out[k] = s
    }
    return out
}

private func interpretEntry(_ name: String, _ value: JSONValue, limits: SafeTensorsLimits,
                            dataSize: Int) throws -> TensorInfo {
    guard case let .object(members) = value else {
        throw SafeTensorsError.entryNotObject(tensor: name, found: value.kind)
    }
    var dtype: SafeTensorsDType?
    var shape: [Int]?
    var offsets: (Int, Int)?
    for (key, v) in members {
        switch key {
        case "dtype":
            guard case let .string(s) = v else {
                throw SafeTensorsError.invalidField(tensor: name, field: key, reason: "expected a string, found \(v.kind)")
            }
            guard let d = SafeTensorsDType(rawValue: s) else { throw SafeTensorsError.unknownDtype(tensor: name, dtype: s) }
            dtype = d
        case "shape":
            guard case let .array(dims) = v else {
                throw SafeTensorsError.invalidField(tensor: name, field: key, reason: "expected an array, found \(v.kind)")
            }
            guard dims.count <= limits.maxRank else {
                throw SafeTensorsError.invalidShape(tensor: name, reason: "rank \(dims.count) exceeds the limit of \(limits.maxRank)")
            }
            var s: [Int] = []
            s.reserveCapacity(dims.count)
            for (j, d) in dims.enumerated() {
                switch d {
                case let .integer(x) where x >= 0: s.append(x)
                case let .integer(x):
                    throw SafeTensorsError.invalidShape(tensor: name, reason: "dimension \(j) is negative (\(x))")
                case let .bigInteger(lexeme):
                    let negative = lexeme.hasPrefix("-")
                    throw SafeTensorsError.invalidShape(tensor: name, reason: negative ? "dimension \(j) is negative"
                                                                                       : "dimension \(j) is too large")
                case .decimal:
                    throw SafeTensorsError.invalidShape(tensor: name, reason: "dimension \(j) is not an integer")
                default:
                    throw SafeTensorsError.invalidShape(tensor: name, reason: "dimension \(j) is \(d.kind), not an integer")
                }
            }
            shape = s
        case "data_offsets":
            guard case let .array(items) = v, items.count == 2 else {
                throw SafeTensorsError.invalidField(tensor: name, field: key, reason: "expected an array of two integers")
            }
            var pair: [Int] = []
            for item in items {
                guard case let .integer(x) = item, x >= 0 else {
                    throw SafeTensorsError.invalidField(tensor: name, field: key,
                                                        reason: "offsets must be non-negative integers, found \(item.kind)")
                }
                pair.append(x)
            }
            offsets = (pair[0], pair[1])
        default:
            throw SafeTensorsError.unexpectedField(tensor: name, field: key)
        }
    }
    guard let dtype else { throw SafeTensorsError.missingField(tensor: name, field: "dtype") }
    guard let shape else { throw SafeTensorsError.missingField(tensor: name, field: "shape") }
    guard let offsets else { throw SafeTensorsError.missingField(tensor: name, field: "data_offsets") }
    let (begin, end) = offsets

    var elements = 1
    for d in shape {
        let (p, o) = elements.multipliedReportingOverflow(by: d)
        if o { throw SafeTensorsError.elementCountOverflow(tensor: name) }
        elements = p
    }
    let (bytes, o) = elements.multipliedReportingOverflow(by: dtype.byteSize)
    if o { throw SafeTensorsError.elementCountOverflow(tensor: name) }
    if begin > end { throw SafeTensorsError.offsetsReversed(tensor: name, begin: begin, end: end) }
    if end > dataSize { throw SafeTensorsError.offsetsOutOfBounds(tensor: name, end: end, dataSize: dataSize) }
    if end - begin != bytes { throw SafeTensorsError.byteCountMismatch(tensor: name, expected: bytes, actual: end - begin) }
    return TensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin..<end, elementCount: elements)
}

// MARK: - UTF-8

/// Offset of the first byte that does not start a well-formed UTF-8 sequence (overlong forms,
/// surrogates and code points past U+10FFFF are ill-formed), or nil.
func firstInvalidUTF8(_ b: UnsafeRawBufferPointer) -> Int? {
    let n = b.count
    var i = 0
    while i < n {
        let c = b[i]
        if c < 0x80 { i += 1; continue }
        let need: Int
        var cp: UInt32
        let minimum: UInt32
        if c & 0xE0 == 0xC0 { need = 1; cp = UInt32(c & 0x1F); minimum = 0x80 }
        else if c & 0xF0 == 0xE0 { need = 2; cp = UInt32(c & 0x0F); minimum = 0x800 }
        else if c & 0xF8 == 0xF0 { need = 3; cp = UInt32(c & 0x07); minimum = 0x10000 }
        else { return i }
        guard need < n - i else { return i }
        for k in 1...need {
            let cc = b[i + k]
            guard cc & 0xC0 == 0x80 else { return i }
            cp = (cp << 6) | UInt32(cc & 0x3F)
        }
        if cp < minimum || cp > 0x10FFFF || (0xD800...0xDFFF).contains(cp) { return i }
        i += need + 1
    }
    return nil
}

// MARK: - JSON

struct JSONParser {
    let buf: UnsafeRawBufferPointer
    let end: Int
    let limits: SafeTensorsLimits
    var i = 0

    init(_ buf: UnsafeRawBufferPointer, limits: SafeTensorsLimits) {
        self.buf = buf
        self.end = buf.count
        self.limits = limits
    }

    @inline(__always) func peek() -> UInt8? { i < end ? buf[i] : nil }

    func fail(_ reason: String) -> SafeTensorsError { .invalidJSON(offset: i, reason: reason) }

    @inline(__always) mutating func skipWhitespace() {
        while i < end {
            let c = buf[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return }
        }
    }

    /// Only whitespace (the padding) may follow the top-level value.
    mutating func expectEnd() throws {
        skipWhitespace()
        if i < end { throw fail("unexpected data after the top-level value") }
    }

    /// Parses one value; `depth` is the nesting level of the container that holds it.
    mutating func parseValue(depth: Int) throws -> JSONValue {
        skipWhitespace()
        guard let c = peek() else { throw fail("unexpected end of header") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: throw fail("unexpected character \(describe(c))")
        }
    }

    private func describe(_ c: UInt8) -> String {
        (0x21...0x7E).contains(c) ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x\(String(c, radix: 16))"
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard end - i >= n else { throw fail("invalid literal") }
        let w = word.utf8Start
        for k in 0..<n where buf[i + k] != w[k] { throw fail("invalid literal") }
        i += n
    }

    private mutating func parseObject(depth: Int) throws -> JSONValue {
        guard depth <= limits.maxDepth else { throw fail("nesting deeper than \(limits.maxDepth)") }
        i += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { i += 1; return .object(members) }
        var keys = Set<String>()  // used once an object is large; small ones scan `members`
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let keyOffset = i
            let key = try parseString()
            let duplicate: Bool
            if members.count < 16 {
                duplicate = members.contains { $0.0 == key }
            } else {
                if keys.isEmpty { keys = Set(members.map(\.0)) }
                duplicate = !keys.insert(key).inserted
            }
            if duplicate { throw SafeTensorsError.duplicateKey(key: key, offset: keyOffset) }
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw fail("expected ':' after a key") }
            i += 1
            members.append((key, try parseValue(depth: depth)))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"): i += 1; return .object(members)
            default: throw fail("expected ',' or '}' in an object")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws -> JSONValue {
        guard depth <= limits.maxDepth else { throw fail("nesting deeper than \(limits.maxDepth)") }
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "]"): i += 1; return .array(items)
            default: throw fail("expected ',' or ']' in an array")
            }
        }
    }

    /// Parses a string starting at the opening quote. The header was UTF-8-validated already.
    mutating func parseString() throws -> String {
        i += 1
        let start = i
        // Fast path: no escapes.
        while i < end {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                guard i - start <= limits.maxStringBytes else { throw fail("string longer than \(limits.maxStringBytes) bytes") }
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
                i += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in a string") }
            i += 1
        }
        guard i < end else { throw fail("unterminated string") }
        // Slow path: unescape.
        var out = [UInt8](UnsafeRawBufferPointer(rebasing: buf[start..<i]))
        while true {
            guard out.count <= limits.maxStringBytes else { throw fail("string longer than \(limits.maxStringBytes) bytes") }
            guard i < end else { throw fail("unterminated string") }
            let c = buf[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            guard i + 1 < end else { throw fail("unterminated escape") }
            let e = buf[i + 1]
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(at: i + 2)
                var consumed = 6
                if (0xD800...0xDBFF).contains(scalar) {
                    guard i + 7 < end, buf[i + 6] == UInt8(ascii: "\\"), buf[i + 7] == UInt8(ascii: "u") else {
                        throw fail("unpaired high surrogate in \\u escape")
                    }
                    let low = try hex4(at: i + 8)
                    guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired high surrogate in \\u escape") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    consumed = 12
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw fail("unpaired low surrogate in \\u escape")
                }
                appendUTF8(scalar, to: &out)
                i += consumed
                continue
            default:
                throw fail("invalid escape \\\(describe(e))")
            }
            i += 2
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func hex4(at p: Int) throws -> UInt32 {
        guard p + 4 <= end else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = buf[p + k]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid hex digit in \\u escape")
            }
            v = v << 4 | d
        }
        return v
    }

    private func appendUTF8(_ s: UInt32, to out: inout [UInt8]) {
        switch s {
        case 0..<0x80:
            out.append(UInt8(s))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | (s >> 6)))
            out.append(UInt8(0x80 | (s & 0x3F)))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | (s >> 12)))
            out.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (s & 0x3F)))
        default:
            out.append(UInt8(0xF0 | (s >> 18)))
            out.append(UInt8(0x80 | ((s >> 12) & 0x3F)))
            out.append(UInt8(0x80 | ((s >> 6) & 0x3F)))
            out.append(UInt8(0x80 | (s & 0x3F)))
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = i
        var negative = false
        if buf[i] == UInt8(ascii: "-") { negative = true; i += 1 }
        guard let first = peek(), isDigit(first) else { throw fail("invalid number") }
        var value = 0
        var overflow = false
        if first == UInt8(ascii: "0") {
            i += 1
            if let c = peek(), isDigit(c) { throw fail("number with a leading zero") }
        } else {
            while let c = peek(), isDigit(c) {
                if i - start >= limits.maxNumberLength { throw fail("number longer than \(limits.maxNumberLength) characters") }
                let d = Int(c - UInt8(ascii: "0"))
                // Accumulate negatively so Int.min fits.
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.subtractingReportingOverflow(d)
                if o1 || o2 { overflow = true } else { value = s }
                i += 1
            }
        }
        var integral = true
        if peek() == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard let c = peek(), isDigit(c) else { throw fail("invalid number: no digits after '.'") }
            while let c = peek(), isDigit(c) {
                if i - start >= limits.maxNumberLength { throw fail("number longer than \(limits.maxNumberLength) characters") }
                i += 1
            }
        }
        if let c = peek(), c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            integral = false
            i += 1
            if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { i += 1 }
            guard let c = peek(), isDigit(c) else { throw fail("invalid number: no digits in the exponent") }
            while let c = peek(), isDigit(c) {
                if i - start >= limits.maxNumberLength { throw fail("number longer than \(limits.maxNumberLength) characters") }
                i += 1
            }
        }
        if i - start > limits.maxNumberLength { throw fail("number longer than \(limits.maxNumberLength) characters") }
        if !integral || overflow {
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)
            return integral ? .bigInteger(text) : .decimal(text)
        }
        if negative { return .integer(value) }
        let (pos, o) = (0).subtractingReportingOverflow(value)
        return o ? .bigInteger(String(decoding: UnsafeRawBufferPointer(rebasing: buf[start..<i]), as: UTF8.self)) : .integer(pos)
    }

    @inline(__always) private func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
}
