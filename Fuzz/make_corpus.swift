// Writes the seed corpus for fuzz_rtk (Fuzz/run.sh --make-corpus). Compiled with the
// RepTokFormat sources into one module, so no import.

import Foundation

@main
enum MakeCorpus {
    static func main() throws {
        let dir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "Fuzz/corpus"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let typical = RTKRecord(fingerprint: 0x0123_4567_89AB_CDEF, width: 128, height: 96, level: 5, seed: 0,
                                sampler: .euler, steps: 1, payload: Array(0..<40))
        let named = RTKRecord(fingerprint: 0xFEED_FACE_CAFE_BEEF, width: 640, height: 480, level: 9, seed: 300,
                              sampler: .heun, steps: 50, name: "photos/2024/cat.png", payload: [0xAB, 0xCD])
        let minimal = RTKRecord(fingerprint: 0, width: 1, height: 1, level: 1, seed: 0, sampler: .euler,
                                steps: 1, payload: [])
        let extreme = RTKRecord(fingerprint: .max, width: 65_535, height: 1_024, level: 9, seed: .max,
                                sampler: .heun, steps: 1_000, name: "d/\u{5199}\u{771F}-\u{1F98A}.jpg",
                                payload: [UInt8](repeating: 0x5A, count: 300), ignorableFlags: 0xF0)
        let token = (0..<96).map { UInt8(($0 * 37) % 7) }
        var zstdPayload = typical
        zstdPayload.payload = try RTKZstd.compress(token)
        let files: [(String, [UInt8])] = [
            ("typical.rtk", try typical.serialized()),
            ("named.rtk", try named.serialized()),
            ("minimal.rtk", try minimal.serialized()),
            ("extreme.rtk", try extreme.serialized()),
            ("zstd-payload.rtk", try zstdPayload.serialized()),
            ("stream3.rtk", try RTKRecord.serialize([typical, named, minimal])),
            ("zstd-frame.bin", try RTKZstd.compress(token)),
        ]
        for (name, bytes) in files {
            try Data(bytes).write(to: URL(fileURLWithPath: dir).appendingPathComponent(name))
            print("\(name): \(bytes.count) bytes")
        }
    }
}
