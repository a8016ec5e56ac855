// libFuzzer target for the .rtk reader and the zstd payload checks. Built by Fuzz/run.sh in
// the same module as Sources/RepTokFormat (so no import). Properties checked on every input:
// - parse/parseOne never crash and only throw RTKError, with one-line messages;
// - whatever parse accepts re-serializes to exactly the input bytes (one encoding per record)
//   and parses again to equal records; parseOne agrees with the first record;
// - zstd decompression of accepted payloads and of the raw input stays within its cap.

@_cdecl("LLVMFuzzerTestOneInput")
public func rtkFuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)

    func checkMessage(_ error: Error) {
        guard let e = error as? RTKError else { fatalError("non-RTKError thrown: \(error)") }
        let text = e.description
        if text.isEmpty || text.contains(where: { $0.isNewline }) { fatalError("bad message: \(text)") }
    }

    do {
        let records = try RTKRecord.parse(input)
        if records.isEmpty { fatalError("parse accepted input but returned no records") }
        let again = try RTKRecord.serialize(records)
        if !again.elementsEqual(input) { fatalError("accepted input does not re-serialize to itself") }
        if try RTKRecord.parse(again) != records { fatalError("re-parse differs") }
        let (first, consumed) = try RTKRecord.parseOne(input)
        let firstBytes = try records[0].serialized()
        if first != records[0] || consumed != firstBytes.count {
            fatalError("parseOne disagrees with parse")
        }
        for record in records {
            if let out = try? RTKZstd.decompress(record.payload, maxBytes: 1 << 16), out.count > 1 << 16 {
                fatalError("decompression exceeded its cap")
            }
        }
    } catch {
        checkMessage(error)
        do { _ = try RTKRecord.parseOne(input) } catch { checkMessage(error) }
    }

    // The raw input as a (magicless) zstd payload.
    do {
        let out = try RTKZstd.decompress(Array(input), maxBytes: 1 << 16)
        if out.count > 1 << 16 { fatalError("decompression exceeded its cap") }
    } catch {
        checkMessage(error)
    }
    return 0
}
