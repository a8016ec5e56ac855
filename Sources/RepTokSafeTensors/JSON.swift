// JSON values: the strict parser of the safetensors header (HeaderParser.swift), also used for the
// JSON documents that files keep in their metadata (`reptok.config`), and two writers:
//
// - `text()`, the stored form: compact, members sorted, numbers as they were written (a Float field
//   encoded from Swift keeps its fraction: `1.0`, not `1`).
// - `canonicalText()`, the canonical form that model fingerprints hash (Man/rtk.5 MODEL
//   FINGERPRINTS). It depends only on the values, never on how a file wrote them:
//   * no whitespace; object members sorted by their keys' UTF-16 code units (RFC 8785's order);
//   * strings: `"` `\` and `/` escaped as `\"` `\\` `\/`; U+0008, U+0009, U+000A, U+000C, U+000D as
//     `\b` `\t` `\n` `\f` `\r`; the other characters below U+0020 as `\u00xx` (lowercase hex);
//     every other character as itself, in UTF-8;
//   * true, false, null;
//   * a number written without fraction or exponent (an integer lexeme): its decimal digits, with
//     a `-` when negative (`-0` is `0`); any size;
//   * any other number: read as the nearest IEEE double (it must be finite), then
//     - `0` for either zero;
//     - the integer's digits when it is integral and its magnitude is below 2^53;
//     - otherwise the shortest digits d1.d2...dk x 10^e that read back as the same double (the
//       closest such when several), written as fixed-point (`0.000680075`, `434.98132`) when
//       e >= -4 and the magnitude is below 2^53, else as `d1.d2...dke-07` / `d1e+16`: `e`, a sign,
//       at least two exponent digits.
//   This is the form in which every reptok model file so far was fingerprinted (Foundation's
//   JSONSerialization output for the values those files hold), now written down and produced
//   here; it is RFC 8785 (JCS) except for the escaped `/` and the number forms, kept so that no
//   fingerprint changes. Golden vectors: Tests/Parity/fingerprint.

import Foundation

/// A parsed JSON value. Objects keep their members in document order (keys are unique: the
/// parser rejects duplicates); the writers sort them.
public enum JSONValue: Sendable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    /// An integer lexeme that fits Int.
    case integer(Int)
    /// An integer lexeme that does not fit Int (its text).
    case bigInteger(String)
    /// A number with a fraction or an exponent (its text).
    case decimal(String)
    case bool(Bool)
    case null

    var kind: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .integer, .bigInteger: return "an integer"
        case .decimal: return "a non-integer number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }
}

/// A JSON document that is not strict JSON (RFC 8259, unique keys), or a value with no JSON form.
public struct JSONError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension JSONValue {
    /// Parses a whole JSON text strictly (RFC 8259; duplicate keys are an error).
    public static func parse(_ text: String) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { bytes in
            var p = JSONParser(UnsafeRawBufferPointer(bytes), limits: SafeTensorsLimits())
            do {
                let v = try p.parseValue(depth: 0)
                try p.expectEnd()
                return v
            } catch let SafeTensorsError.invalidJSON(offset, reason) {
                throw JSONError("invalid JSON at byte \(offset): \(reason)")
            } catch let SafeTensorsError.duplicateKey(key, offset) {
                throw JSONError("duplicate JSON key \"\(key)\" at byte \(offset)")
            }
        }
    }

    /// The value under `key` of an object (nil: no such member, or not an object).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }

    /// An object with `key` set to `value` (replaced if present, else added).
    public func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case var .object(members) = self else { return self }
        if let i = members.firstIndex(where: { $0.0 == key }) { members[i].1 = value } else { members.append((key, value)) }
        return .object(members)
    }

    /// The stored form: compact, members sorted by UTF-16 code units, strings escaped as in the
    /// canonical form, numbers as written.
    public func text() -> String {
        var out = ""
        try! write(into: &out, canonical: false)  // only the canonical number form can fail
        return out
    }

    /// The canonical form that fingerprints hash (see the top of this file). Throws for a number
    /// that is not finite or not a JSON number.
    public func canonicalText() throws -> String {
        var out = ""
        try write(into: &out, canonical: true)
        return out
    }

    private func write(into out: inout String, canonical: Bool) throws {
        switch self {
        case let .object(members):
            out += "{"
            for (i, m) in members.sorted(by: { $0.0.utf16.lexicographicallyPrecedes($1.0.utf16) }).enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(m.0, into: &out)
                out += ":"
                try m.1.write(into: &out, canonical: canonical)
            }
            out += "}"
        case let .array(items):
            out += "["
            for (i, v) in items.enumerated() {
                if i > 0 { out += "," }
                try v.write(into: &out, canonical: canonical)
            }
            out += "]"
        case let .string(s): JSONValue.writeString(s, into: &out)
        case let .integer(i): out += String(i)
        case let .bigInteger(s): out += s
        case let .decimal(s): out += canonical ? try JSONValue.canonicalNumber(s) : s
        case let .bool(b): out += b ? "true" : "false"
        case .null: out += "null"
        }
    }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "/": out += "\\/"
            case "\u{08}": out += "\\b"
            case "\u{09}": out += "\\t"
            case "\u{0A}": out += "\\n"
            case "\u{0C}": out += "\\f"
            case "\u{0D}": out += "\\r"
            case "\u{00}"..."\u{1F}":
                let h = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }

    /// The canonical form of a number lexeme with a fraction or an exponent.
    static func canonicalNumber(_ lexeme: String) throws -> String {
        guard let d = Double(lexeme), d.isFinite, isJSONNumber(lexeme) else {
            throw JSONError("number \(lexeme) has no canonical form (not a finite JSON number)")
        }
        return canonicalNumber(d)
    }

    /// The canonical form of a finite double.
    public static func canonicalNumber(_ d: Double) -> String {
        precondition(d.isFinite, "JSON numbers are finite")
        if d == 0 { return "0" }
        let big = d.magnitude >= 9_007_199_254_740_992  // 2^53
        if !big && d == d.rounded(.towardZero) { return String(Int64(d)) }
        // The shortest round-trip digits: Swift's description prints them (as fixed-point or
        // scientific, which is read back into digits and exponent here, not relied upon).
        var digits = [Character](), exponent = 0, seenPoint = false, pointShift = 0
        let text = d.magnitude.description
        var mantissa = Substring(text), expPart = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            expPart = Int(text[text.index(after: e)...])!
        }
        for c in mantissa {
            if c == "." { seenPoint = true; continue }
            if seenPoint { pointShift -= 1 }
            digits.append(c)
        }
        // value = digits (as an integer) x 10^(pointShift + expPart)
        while digits.first == "0" { digits.removeFirst() }
        while digits.last == "0" { digits.removeLast(); pointShift += 1 }
        exponent = digits.count - 1 + pointShift + expPart        // of the first digit
        let sign = d < 0 ? "-" : ""
        if exponent >= -4 && !big {
            if exponent < 0 {
                return sign + "0." + String(repeating: "0", count: -exponent - 1) + String(digits)
            }
            let intCount = exponent + 1
            let head = intCount <= digits.count ? String(digits[..<intCount]) : String(digits) + String(repeating: "0", count: intCount - digits.count)
            let tail = intCount < digits.count ? String(digits[intCount...]) : ""
            return sign + head + (tail.isEmpty ? "" : "." + tail)
        }
        let e = String(exponent.magnitude)
        return sign + String(digits[0]) + (digits.count > 1 ? "." + String(digits[1...]) : "")
            + "e" + (exponent < 0 ? "-" : "+") + (e.count < 2 ? "0" : "") + e
    }

    /// True for the JSON number grammar (RFC 8259: -? int frac? exp?).
    static func isJSONNumber(_ s: String) -> Bool {
        var bytes = Array(s.utf8)[...]
        func digits() -> Int { var n = 0; while let c = bytes.first, c >= 0x30 && c <= 0x39 { bytes.removeFirst(); n += 1 }; return n }
        if bytes.first == UInt8(ascii: "-") { bytes.removeFirst() }
        if bytes.first == UInt8(ascii: "0") { bytes.removeFirst() } else if digits() == 0 { return false }
        if bytes.first == UInt8(ascii: ".") { bytes.removeFirst(); if digits() == 0 { return false } }
        if let c = bytes.first, c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            bytes.removeFirst()
            if let s = bytes.first, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { bytes.removeFirst() }
            if digits() == 0 { return false }
        }
        return bytes.isEmpty
    }
}

extension JSONValue: Equatable {
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.integer(x), .integer(y)): return x == y
        case let (.bigInteger(x), .bigInteger(y)): return x == y
        case let (.decimal(x), .decimal(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }
}

extension JSONValue: ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByStringLiteral,
                     ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .decimal(value.description) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

// MARK: - From Encodable values

extension JSONValue {
    /// The JSON of an Encodable value, as its `encode(to:)` writes it: Float and Double values as
    /// their shortest round-trip text with a fraction or an exponent (`1.0`, `1e-06`), integers
    /// as integers. Non-finite numbers are an error.
    public init<T: Encodable>(encoding value: T) throws {
        self = try TreeEncoder.encode(value, codingPath: [])
    }
}

/// Builds a JSONValue tree. Containers write into reference nodes, so nested containers can be
/// filled after they are handed out (as Encoder requires).
private final class TreeNode {
    enum Content { case empty, leaf(JSONValue), object([(String, TreeNode)]), array([TreeNode]) }
    var content = Content.empty

    func value() -> JSONValue {
        switch content {
        case .empty: return .object([])
        case let .leaf(v): return v
        case let .object(m): return .object(m.map { ($0.0, $0.1.value()) })
        case let .array(a): return .array(a.map { $0.value() })
        }
    }

    func member(_ key: String) -> TreeNode {
        let n = TreeNode()
        if case var .object(m) = content {
            if let i = m.firstIndex(where: { $0.0 == key }) { m[i].1 = n } else { m.append((key, n)) }
            content = .object(m)
        } else {
            content = .object([(key, n)])
        }
        return n
    }

    func append() -> TreeNode {
        let n = TreeNode()
        if case var .array(a) = content { a.append(n); content = .array(a) } else { content = .array([n]) }
        return n
    }
}

private struct TreeEncoder: Encoder {
    let node: TreeNode
    let codingPath: [CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    static func encode<T: Encodable>(_ value: T, codingPath: [CodingKey]) throws -> JSONValue {
        let n = TreeNode()
        try fill(n, with: value, codingPath: codingPath)
        return n.value()
    }

    static func fill<T: Encodable>(_ node: TreeNode, with value: T, codingPath: [CodingKey]) throws {
        func number(_ text: String, finite: Bool) throws -> JSONValue {
            guard finite else {
                throw EncodingError.invalidValue(value, .init(codingPath: codingPath, debugDescription: "JSON has no \(text)"))
            }
            return .decimal(text)
        }
        switch value {
        case let v as Bool: node.content = .leaf(.bool(v))
        case let v as String: node.content = .leaf(.string(v))
        case let v as Float: node.content = .leaf(try number(v.description, finite: v.isFinite))
        case let v as Double: node.content = .leaf(try number(v.description, finite: v.isFinite))
        case let v as Int: node.content = .leaf(.integer(v))
        case let v as any BinaryInteger:
            node.content = .leaf(Int(exactly: v).map { .integer($0) } ?? .bigInteger(String(describing: v)))
        default:
            try value.encode(to: TreeEncoder(node: node, codingPath: codingPath))
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .empty = node.content { node.content = .object([]) }
        return KeyedEncodingContainer(Keyed(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if case .empty = node.content { node.content = .array([]) }
        return Unkeyed(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> SingleValueEncodingContainer { Single(node: node, codingPath: codingPath) }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: TreeNode
        let codingPath: [CodingKey]
        mutating func encodeNil(forKey key: Key) throws { node.member(key.stringValue).content = .leaf(.null) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            try TreeEncoder.fill(node.member(key.stringValue), with: value, codingPath: codingPath + [key])
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type,
                                                            forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            TreeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
            TreeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key]).unkeyedContainer()
        }
        mutating func superEncoder() -> Encoder { TreeEncoder(node: node.member("super"), codingPath: codingPath) }
        mutating func superEncoder(forKey key: Key) -> Encoder {
            TreeEncoder(node: node.member(key.stringValue), codingPath: codingPath + [key])
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let node: TreeNode
        let codingPath: [CodingKey]
        var count: Int { if case let .array(a) = node.content { return a.count } else { return 0 } }
        mutating func encodeNil() throws { node.append().content = .leaf(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws {
            try TreeEncoder.fill(node.append(), with: value, codingPath: codingPath)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            TreeEncoder(node: node.append(), codingPath: codingPath).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer {
            TreeEncoder(node: node.append(), codingPath: codingPath).unkeyedContainer()
        }
        mutating func superEncoder() -> Encoder { TreeEncoder(node: node.append(), codingPath: codingPath) }
    }

    struct Single: SingleValueEncodingContainer {
        let node: TreeNode
        let codingPath: [CodingKey]
        mutating func encodeNil() throws { node.content = .leaf(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { try TreeEncoder.fill(node, with: value, codingPath: codingPath) }
    }
}
