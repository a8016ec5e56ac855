import Foundation
import RepTokSafeTensors
import XCTest

/// JSONValue: parsing, the stored and canonical writers, and values from Encodable types (the
/// canonical form's golden vectors are in Tests/Parity/fingerprint, read by CodecTests).
final class JSONTests: XCTestCase {
    struct Inner: Codable { var name: String; var on: Bool }
    enum Kind: String, Codable { case laplace }
    struct Sample: Codable {
        var ratio: Float = 1
        var eps: Float = 1e-6
        var scale: Double = 0.1
        var count: Int = 4
        var big: UInt64 = .max
        var list: [Float] = [0.485, 2, 0.90000004]
        var kind: Kind = .laplace
        var path = "a/b"
        var absent: Int? = nil
        var inner = Inner(name: "x", on: true)
    }

    func testEncodableStoredAndCanonical() throws {
        let v = try JSONValue(encoding: Sample())
        XCTAssertEqual(v.text(), """
            {"big":18446744073709551615,"count":4,"eps":1e-06,"inner":{"name":"x","on":true},"kind":"laplace",\
            "list":[0.485,2.0,0.90000004],"path":"a\\/b","ratio":1.0,"scale":0.1}
            """)
        XCTAssertEqual(try v.canonicalText(), """
            {"big":18446744073709551615,"count":4,"eps":1e-06,"inner":{"name":"x","on":true},"kind":"laplace",\
            "list":[0.485,2,0.90000004],"path":"a\\/b","ratio":1,"scale":0.1}
            """)
        // what Foundation's JSONDecoder reads back from either form
        for text in [v.text(), try v.canonicalText()] {
            let back = try JSONDecoder().decode(Sample.self, from: Data(text.utf8))
            XCTAssertEqual(back.list, Sample().list)
            XCTAssertEqual(back.eps, 1e-6)
            XCTAssertEqual(back.big, .max)
        }
    }

    func testNonFiniteNumbersHaveNoJSON() {
        var s = Sample()
        s.eps = .nan
        XCTAssertThrowsError(try JSONValue(encoding: s))
        s.eps = 1; s.scale = .infinity
        XCTAssertThrowsError(try JSONValue(encoding: s))
        XCTAssertThrowsError(try JSONValue.decimal("1e999").canonicalText())
        XCTAssertThrowsError(try JSONValue.decimal("1.").canonicalText())
        XCTAssertEqual(JSONValue.decimal("1.").text(), "1.")   // the stored form writes what it holds
    }

    func testParseIsStrictAndKeepsOrderAndLexemes() throws {
        let v = try JSONValue.parse(#" {"b": [1, 2.50, -0, 1e400, 99999999999999999999], "a": {"z": null, "y": "\/"}} "#)
        XCTAssertEqual(v, ["b": [1, .decimal("2.50"), 0, .decimal("1e400"), .bigInteger("99999999999999999999")],
                           "a": ["z": .null, "y": "/"]])
        XCTAssertEqual(v["a"]?["y"], "/")
        XCTAssertNil(v["c"])
        XCTAssertEqual(v.setting("c", true)["c"], true)
        XCTAssertEqual(v.text(), #"{"a":{"y":"\/","z":null},"b":[1,2.50,0,1e400,99999999999999999999]}"#)
        XCTAssertThrowsError(try v.canonicalText())   // 1e400 is not a finite double
        for bad in ["", "{", "[1,]", "{\"a\":1,\"a\":2}", "01", "NaN", "'a'", "\"\\ud800\"", "[1] 2", "\"\u{1}\""] {
            XCTAssertThrowsError(try JSONValue.parse(bad), bad) { e in
                XCTAssertTrue(e is JSONError, "\(bad): \(e)")
            }
        }
    }

    func testCanonicalNumberOfDoubles() {
        let cases: [(Double, String)] = [(0, "0"), (-0.0, "0"), (1, "1"), (-2, "-2"), (0.1, "0.1"), (1e-7, "1e-07"),
                                         (1e21, "1e+21"), (1e15, "1000000000000000"), (9007199254740992, "9.007199254740992e+15"),
                                         (0.0001, "0.0001"), (0.00001, "1e-05"), (123.456, "123.456"),
                                         (Double(Float(0.485)), "0.48500001430511475"), (.leastNonzeroMagnitude, "5e-324"),
                                         (.greatestFiniteMagnitude, "1.7976931348623157e+308")]
        for (d, s) in cases { XCTAssertEqual(JSONValue.canonicalNumber(d), s, "\(d)") }
    }
}
