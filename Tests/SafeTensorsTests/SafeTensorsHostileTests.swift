import RepTokTensor
import RepTokTestSupport
import Foundation
import XCTest
@testable import RepTokSafeTensors

/// Crafted corruptions, in the style of llama.cpp's tests/test-gguf.cpp: each builds a file that
/// must be rejected with a thrown error (a trap would kill the test run).
enum HostileCase: String, CaseIterable {
    case emptyFile, shortFile, headerLengthHuge, headerLengthOverLimit, headerLengthBeyondFile, headerEmpty
    case headerNotJSON, headerNotObject, headerTrailingGarbage, headerTruncatedJSON
    case badUTF8, overlongUTF8, encodedSurrogateUTF8
    case duplicateName, duplicateNameEscaped, duplicateField, duplicateMetadata, duplicateMetadataKey
    case entryNotObject, missingDtype, missingShape, missingOffsets, extraField
    case dtypeNotString, badDtype, shapeNotArray, negativeDim, fractionalDim, exponentDim, hugeDim, stringDim
    case shapeOverflow, byteCountOverflow, rankTooHigh
    case offsetsNotPair, offsetsNegative, offsetsNotIntegers, offsetsHuge
    case byteCountMismatch, offsetsReversed, offsetsOutOfBounds, offsetsOverlap, offsetsDuplicateRange, offsetsGap
    case gapAtStart, trailingBytesUncovered, truncatedData, dataWithoutTensors
    case metadataNotObject, metadataNotStrings, metadataNull
    case deepNesting, deepNestingInMetadata, badEscape, loneHighSurrogate, loneLowSurrogate, controlCharInString
    case unterminatedString, leadingZero, trailingComma, missingColon, singleQuotes, nanLiteral, numberTooLong
    case nulInHeader, tooManyTensors, stringTooLong

    private static let ok = #""a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
    private static let okData = leBytes([1, 2])

    private static func entry(_ name: String = "a", dtype: String = "\"F32\"", shape: String = "[2]",
                              offsets: String = "[0,8]") -> String {
        #""\#(name)":{"dtype":\#(dtype),"shape":\#(shape),"data_offsets":\#(offsets)}"#
    }

    /// The file bytes and the limits to parse them with.
    var file: (bytes: [UInt8], limits: SafeTensorsLimits) {
        var limits = SafeTensorsLimits()
        let ok = Self.ok, data = Self.okData
        let bytes: [UInt8]
        switch self {
        case .emptyFile: bytes = []
        case .shortFile: bytes = [2, 0, 0, 0, 0]
        case .headerLengthHuge: bytes = craftFile("{\(ok)}", data: data, length: UInt64.max)
        case .headerLengthOverLimit:
            limits.maxHeaderBytes = 16
            bytes = craftFile("{\(ok)}", data: data)
        case .headerLengthBeyondFile: bytes = craftFile("{\(ok)}", data: data, length: 1000)
        case .headerEmpty: bytes = craftFile("", data: data)
        case .headerNotJSON: bytes = craftFile("hello world", data: data)
        case .headerNotObject: bytes = craftFile("[1,2,3]", data: data)
        case .headerTrailingGarbage: bytes = craftFile("{\(ok)} x", data: data)
        case .headerTruncatedJSON: bytes = craftFile("{\(ok)", data: data)
        case .badUTF8: bytes = craftFile(headerBytes: Array("{\"a\u{FF}\":1}".utf8).map { $0 == 0xC3 ? 0xFF : $0 }, data: data)
        case .overlongUTF8: bytes = craftFile(headerBytes: Array("{\"".utf8) + [0xC0, 0xAF] + Array("\":1}".utf8), data: data)
        case .encodedSurrogateUTF8:
            bytes = craftFile(headerBytes: Array("{\"".utf8) + [0xED, 0xA0, 0x80] + Array("\":1}".utf8), data: data)
        case .duplicateName: bytes = craftFile("{\(ok),\(Self.entry(offsets: "[8,16]"))}", data: data + data)
        case .duplicateNameEscaped: bytes = craftFile("{\(ok),\(Self.entry("\\u0061", offsets: "[8,16]"))}", data: data + data)
        case .duplicateField:
            bytes = craftFile(#"{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data)
        case .duplicateMetadata: bytes = craftFile(#"{"__metadata__":{},"__metadata__":{},\#(ok)}"#, data: data)
        case .duplicateMetadataKey: bytes = craftFile(#"{"__metadata__":{"k":"1","k":"2"},\#(ok)}"#, data: data)
        case .entryNotObject: bytes = craftFile(#"{"a":[0,8]}"#, data: data)
        case .missingDtype: bytes = craftFile(#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, data: data)
        case .missingShape: bytes = craftFile(#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, data: data)
        case .missingOffsets: bytes = craftFile(#"{"a":{"dtype":"F32","shape":[2]}}"#, data: data)
        case .extraField: bytes = craftFile(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#, data: data)
        case .dtypeNotString: bytes = craftFile("{\(Self.entry(dtype: "4"))}", data: data)
        case .badDtype: bytes = craftFile("{\(Self.entry(dtype: "\"F7\""))}", data: data)
        case .shapeNotArray: bytes = craftFile("{\(Self.entry(shape: "2"))}", data: data)
        case .negativeDim: bytes = craftFile("{\(Self.entry(shape: "[-2]"))}", data: data)
        case .fractionalDim: bytes = craftFile("{\(Self.entry(shape: "[2.0]"))}", data: data)
        case .exponentDim: bytes = craftFile("{\(Self.entry(shape: "[2e0]"))}", data: data)
        case .hugeDim: bytes = craftFile("{\(Self.entry(shape: "[99999999999999999999]"))}", data: data)
        case .stringDim: bytes = craftFile("{\(Self.entry(shape: "[\"2\"]"))}", data: data)
        case .shapeOverflow: bytes = craftFile("{\(Self.entry(shape: "[4294967296,4294967296]"))}", data: data)
        case .byteCountOverflow: bytes = craftFile("{\(Self.entry(shape: "[4611686018427387904]"))}", data: data)
        case .rankTooHigh:
            bytes = craftFile("{\(Self.entry(shape: "[" + Array(repeating: "1", count: 65).joined(separator: ",") + "]"))}", data: data)
        case .offsetsNotPair: bytes = craftFile("{\(Self.entry(offsets: "[0,8,8]"))}", data: data)
        case .offsetsNegative: bytes = craftFile("{\(Self.entry(offsets: "[-8,0]"))}", data: data)
        case .offsetsNotIntegers: bytes = craftFile("{\(Self.entry(offsets: "[0,8.0]"))}", data: data)
        case .offsetsHuge: bytes = craftFile("{\(Self.entry(offsets: "[0,18446744073709551616]"))}", data: data)
        case .byteCountMismatch: bytes = craftFile("{\(Self.entry(shape: "[3]"))}", data: data)
        case .offsetsReversed: bytes = craftFile("{\(Self.entry(shape: "[0]", offsets: "[8,0]"))}", data: data)
        case .offsetsOutOfBounds: bytes = craftFile("{\(Self.entry(offsets: "[8,16]"))}", data: data)
        case .offsetsOverlap:
            bytes = craftFile("{\(ok),\(Self.entry("b", offsets: "[4,12]"))}", data: data + data)
        case .offsetsDuplicateRange:
            bytes = craftFile("{\(ok),\(Self.entry("b", offsets: "[0,8]"))}", data: data)
        case .offsetsGap:
            bytes = craftFile("{\(ok),\(Self.entry("b", offsets: "[12,20]"))}", data: data + data + [0, 0, 0, 0])
        case .gapAtStart: bytes = craftFile("{\(Self.entry(offsets: "[4,12]"))}", data: data + [0, 0, 0, 0])
        case .trailingBytesUncovered: bytes = craftFile("{\(ok)}", data: data + [0])
        case .truncatedData: bytes = craftFile("{\(ok)}", data: Array(data.prefix(7)))
        case .dataWithoutTensors: bytes = craftFile("{}", data: [1])
        case .metadataNotObject: bytes = craftFile(#"{"__metadata__":["a"],\#(ok)}"#, data: data)
        case .metadataNotStrings: bytes = craftFile(#"{"__metadata__":{"a":"b","n":1},\#(ok)}"#, data: data)
        case .metadataNull: bytes = craftFile(#"{"__metadata__":null,\#(ok)}"#, data: data)
        case .deepNesting: bytes = craftFile(String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        case .deepNestingInMetadata:
            bytes = craftFile(#"{"__metadata__":{"a":"# + String(repeating: "{\"x\":", count: 5000) + "1"
                              + String(repeating: "}", count: 5000) + "}}")
        case .badEscape: bytes = craftFile(#"{"a\q":1}"#)
        case .loneHighSurrogate: bytes = craftFile(#"{"__metadata__":{"k":"\ud83d"},\#(ok)}"#, data: data)
        case .loneLowSurrogate: bytes = craftFile(#"{"__metadata__":{"k":"\ude00x"},\#(ok)}"#, data: data)
        case .controlCharInString: bytes = craftFile("{\"__metadata__\":{\"k\":\"a\u{01}b\"},\(ok)}", data: data)
        case .unterminatedString: bytes = craftFile(#"{"__metadata__":{"k":"abc"#, data: data)
        case .leadingZero: bytes = craftFile("{\(Self.entry(shape: "[02]"))}", data: data)
        case .trailingComma: bytes = craftFile("{\(ok),}", data: data)
        case .missingColon: bytes = craftFile(#"{"a" {"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: data)
        case .singleQuotes: bytes = craftFile("{'a':{}}", data: data)
        case .nanLiteral: bytes = craftFile("{\(Self.entry(shape: "[NaN]"))}", data: data)
        case .numberTooLong: bytes = craftFile("{\(Self.entry(shape: "[" + String(repeating: "0", count: 1) + "." + String(repeating: "5", count: 100) + "]"))}", data: data)
        case .nulInHeader: bytes = craftFile(headerBytes: Array("{\(ok)}".utf8) + [0], data: data)
        case .tooManyTensors:
            limits.maxTensors = 1
            bytes = craftFile("{\(ok),\(Self.entry("b", offsets: "[8,16]"))}", data: data + data)
        case .stringTooLong:
            limits.maxStringBytes = 10
            bytes = craftFile(#"{"__metadata__":{"k":"0123456789abcdef"},\#(ok)}"#, data: data)
        }
        return (bytes, limits)
    }

    /// Whether `e` is the error this case is about.
    func matches(_ e: SafeTensorsError) -> Bool {
        switch (self, e) {
        case (.emptyFile, .fileTooShort(0)), (.shortFile, .fileTooShort(5)): return true
        case (.headerLengthHuge, .headerTooLarge), (.headerLengthOverLimit, .headerTooLarge(_, 16)): return true
        case (.headerLengthBeyondFile, .headerBeyondFile(1000, _)): return true
        case (.headerEmpty, .invalidJSON), (.headerNotJSON, .invalidJSON), (.headerTrailingGarbage, .invalidJSON),
             (.headerTruncatedJSON, .invalidJSON): return true
        case (.headerNotObject, .headerNotObject("an array")): return true
        case (.badUTF8, .headerNotUTF8(3)), (.overlongUTF8, .headerNotUTF8(2)), (.encodedSurrogateUTF8, .headerNotUTF8(2)):
            return true
        case (.duplicateName, .duplicateTensorName("a")), (.duplicateNameEscaped, .duplicateTensorName("a")): return true
        case (.duplicateField, .duplicateKey("dtype", _)), (.duplicateMetadata, .duplicateKey("__metadata__", _)),
             (.duplicateMetadataKey, .duplicateKey("k", _)): return true
        case (.entryNotObject, .entryNotObject("a", "an array")): return true
        case (.missingDtype, .missingField("a", "dtype")), (.missingShape, .missingField("a", "shape")),
             (.missingOffsets, .missingField("a", "data_offsets")): return true
        case (.extraField, .unexpectedField("a", "x")): return true
        case (.dtypeNotString, .invalidField("a", "dtype", _)): return true
        case (.badDtype, .unknownDtype("a", "F7")): return true
        case (.shapeNotArray, .invalidField("a", "shape", _)): return true
        case (.negativeDim, .invalidShape("a", let r)): return r.contains("negative")
        case (.fractionalDim, .invalidShape("a", let r)), (.exponentDim, .invalidShape("a", let r)): return r.contains("not an integer")
        case (.hugeDim, .invalidShape("a", let r)): return r.contains("too large")
        case (.stringDim, .invalidShape("a", let r)): return r.contains("a string")
        case (.rankTooHigh, .invalidShape("a", let r)): return r.contains("rank 65")
        case (.shapeOverflow, .elementCountOverflow("a")), (.byteCountOverflow, .elementCountOverflow("a")): return true
        case (.offsetsNotPair, .invalidField("a", "data_offsets", _)), (.offsetsNegative, .invalidField("a", "data_offsets", _)),
             (.offsetsNotIntegers, .invalidField("a", "data_offsets", _)), (.offsetsHuge, .invalidField("a", "data_offsets", _)):
            return true
        case (.byteCountMismatch, .byteCountMismatch("a", 12, 8)): return true
        case (.offsetsReversed, .offsetsReversed("a", 8, 0)): return true
        case (.offsetsOutOfBounds, .offsetsOutOfBounds("a", 16, 8)), (.truncatedData, .offsetsOutOfBounds("a", 8, 7)): return true
        case (.offsetsOverlap, .offsetsOverlap("b", "a", 4, 8)), (.offsetsDuplicateRange, .offsetsOverlap("b", "a", 0, 8)):
            return true
        case (.offsetsGap, .offsetsGap("b", 12, 8)), (.gapAtStart, .offsetsGap("a", 4, 0)): return true
        case (.trailingBytesUncovered, .dataNotCovered(8, 9)), (.dataWithoutTensors, .dataNotCovered(0, 1)): return true
        case (.metadataNotObject, .metadataNotObject("an array")), (.metadataNull, .metadataNotObject("null")): return true
        case (.metadataNotStrings, .metadataValueNotString("n", "an integer")): return true
        case (.deepNesting, .invalidJSON(_, let r)), (.deepNestingInMetadata, .invalidJSON(_, let r)): return r.contains("nesting")
        case (.badEscape, .invalidJSON(_, let r)): return r.contains("escape")
        case (.loneHighSurrogate, .invalidJSON(_, let r)), (.loneLowSurrogate, .invalidJSON(_, let r)): return r.contains("surrogate")
        case (.controlCharInString, .invalidJSON(_, let r)): return r.contains("control")
        case (.unterminatedString, .invalidJSON(_, let r)): return r.contains("unterminated")
        case (.leadingZero, .invalidJSON(_, let r)): return r.contains("leading zero")
        case (.trailingComma, .invalidJSON), (.missingColon, .invalidJSON), (.singleQuotes, .invalidJSON),
             (.nanLiteral, .invalidJSON), (.nulInHeader, .invalidJSON): return true
        case (.numberTooLong, .invalidJSON(_, let r)): return r.contains("number longer")
        case (.tooManyTensors, .tooManyTensors(1)): return true
        case (.stringTooLong, .invalidJSON(_, let r)): return r.contains("string longer")
        default: return false
        }
    }
}

final class SafeTensorsHostileTests: XCTestCase {

    func testEveryHostileCaseThrowsTheRightError() throws {
        let dir = try makeTempDir(self)
        for c in HostileCase.allCases {
            let (bytes, limits) = c.file
            let path = dir + "/\(c.rawValue).safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            for (how, parse) in [("memory", { try SafeTensorsFile(data: bytes, limits: limits) }),
                                 ("path", { try SafeTensorsFile(path: path, limits: limits) })] {
                do {
                    _ = try parse()
                    XCTFail("\(c) (\(how)): parsed, expected an error")
                } catch let e as SafeTensorsError {
                    XCTAssertTrue(c.matches(e), "\(c) (\(how)): unexpected error \(e)")
                    XCTAssertFalse(e.description.contains("\n"))
                } catch {
                    XCTFail("\(c) (\(how)): not a SafeTensorsError: \(error)")
                }
            }
        }
    }

    func testHostileCasesAreMinimalCorruptions() throws {
        // The baseline the cases are built from parses.
        let f = try SafeTensorsFile(data: craftFile(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                                                    data: leBytes([1, 2])))
        XCTAssertEqual(try f.floats("a"), [1, 2])
        // Zero-size tensors may share an offset with others; whitespace is allowed in the JSON.
        let g = try SafeTensorsFile(data: craftFile(
            " {\n \"z\" : {\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[8,8]},\t\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]} } ",
            data: leBytes([1, 2])))
        XCTAssertEqual(g.names, ["a", "z"])
        XCTAssertEqual(try g.floats("z"), [])
    }

    /// 20,000 seeded random mutations of valid files: each parse succeeds or throws, never traps;
    /// whatever parses can be read in full.
    func testRandomMutationsNeverCrash() throws {
        var w = SafeTensorsWriter(metadata: ["format": "pt", "k": "v\"\\é"])
        try w.add("enc.w", shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        try w.add("enc.b", shape: [3], values: [0.5, -0.5, 2], as: .F16)
        try w.add("dec.w", shape: [2], values: [7, 8], as: .BF16)
        try w.add("idx", shape: [2], dtype: .I64, rawBytes: [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])
        try w.add("mask", shape: [1], dtype: .BOOL, rawBytes: [1])
        try w.add("s", shape: [], values: [3])
        let bases = [try w.serialize(), SafeTensorsTests.pythonFixtureBytes()]
        for b in bases { XCTAssertNoThrow(try SafeTensorsFile(data: b)) }

        let interesting: [UInt8] = Array("{}[]\",:\\-0123456789.eE ntfu".utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xBF, 0xC0, 0xED, 0xF4, 0xFF]
        var rng = SplitMix64(seed: 0x5AFE_7E45)
        var parsed = 0, rejected = 0
        for iteration in 0..<20_000 {
            var bytes = bases[iteration % bases.count]
            let edits = Int.random(in: 1...4, using: &rng)
            for _ in 0..<edits {
                guard !bytes.isEmpty else { break }
                let pos = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<10, using: &rng) {
                case 0, 1: bytes[pos] = UInt8.random(in: 0...255, using: &rng)
                case 2, 3: bytes[pos] = interesting.randomElement(using: &rng)!
                case 4: bytes[pos] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
                case 5: bytes.removeSubrange(pos...)  // truncate
                case 6: bytes.remove(at: pos)
                case 7: bytes.insert(interesting.randomElement(using: &rng)!, at: pos)
                case 8:  // header length field
                    bytes[Int.random(in: 0..<min(8, bytes.count), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                default:  // digits in the header: nudge a number
                    if let d = bytes.indices.filter({ (0x30...0x39).contains(bytes[$0]) && $0 >= 8 })
                        .randomElement(using: &rng) {
                        bytes[d] = UInt8(ascii: "0") + UInt8.random(in: 0...9, using: &rng)
                    }
                }
            }
            do {
                let f = try SafeTensorsFile(data: bytes)
                parsed += 1
                var covered = 0
                for t in f.tensors {
                    covered += t.byteCount
                    XCTAssertEqual(try f.rawBytes(t.name).count, t.byteCount)
                    if t.dtype.convertsToFloat { XCTAssertEqual(try f.floats(t.name).count, t.elementCount) }
                }
                XCTAssertEqual(covered, f.dataSize)
            } catch is SafeTensorsError {
                rejected += 1
            }
        }
        XCTAssertEqual(parsed + rejected, 20_000)
        XCTAssertGreaterThan(parsed, 0, "some mutations (inside data or harmless) must still parse")
        XCTAssertGreaterThan(rejected, 10_000)
    }

    func testEveryTruncationIsRejectedCleanly() throws {
        let bytes = SafeTensorsTests.pythonFixtureBytes()
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try SafeTensorsFile(data: Array(bytes.prefix(n))), "prefix \(n)")
        }
    }
}
