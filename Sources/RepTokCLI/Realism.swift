// rteval --realism: the Frechet distance of SSL features, decodes against inputs (see Eval.swift).

import ArgumentParser
import Foundation
import RepTokCodec
import RepTokData
import RepTokEval
import RepTokImage

extension RTEval {
    struct Realism {
        var encoderPath: String
        var encoderFingerprint: String
        var dim: Int
        var resolution: Int
        var viewsPerImage: Int
        /// Per level: the estimate over the images whose decode at that level succeeded.
        var levels: [(level: Int, estimate: Frechet.Estimate)]
        /// Inputs against themselves with other boxes: the distance sampling alone gives.
        var floor: Frechet.Estimate
    }

    /// Seeds of the view boxes: the decodes use the inputs' boxes; the floor, other boxes.
    static let realismSeed: UInt64 = 0
    static let realismFloorSeed: UInt64 = 1

    static func realism(_ fs: SSLFeatureSpace, views: [RGBImage], decodes: [[Int: RGBImage]], levels: [Int],
                        viewsPerImage: Int?, resamples: Int, console: Console) throws -> Realism {
        let N = views.count
        guard N >= 2 else { throw FrechetError.tooFewSamples(N) }
        let V = viewsPerImage ?? fs.viewsPerImage(images: N)
        let total = N * (2 + levels.count)
        var done = 0
        func step(_ what: String) {
            done += 1
            console.progress(done: done, total: total, name: "realism: \(what)")
        }
        var inputs: [[Double]] = [], floorInputs: [[Double]] = []
        var boxes: [[SSLFeatureSpace.Box]] = []
        for (i, v) in views.enumerated() {
            let b = SSLFeatureSpace.boxes(count: V, seed: realismSeed, image: i)
            boxes.append(b)
            inputs.append(fs.features(v, boxes: b)); step("inputs")
            // The floor's whole-image view would repeat view 0 exactly: all its views are random.
            let fb = Array(SSLFeatureSpace.boxes(count: V + 1, seed: realismFloorSeed, image: i).dropFirst())
            floorInputs.append(fs.features(v, boxes: fb)); step("inputs")
        }
        let floor = try Frechet.estimate(groupsA: inputs, groupsB: floorInputs, dim: fs.dim, resamples: resamples)
        var out: [(Int, Frechet.Estimate)] = []
        for level in levels {
            var a: [[Double]] = [], b: [[Double]] = []
            for i in 0..<N {
                guard let d = decodes[i][level] else { continue }
                a.append(inputs[i]); b.append(fs.features(d, boxes: boxes[i])); step("level \(level)")
            }
            guard a.count >= 2 else { continue }
            out.append((level, try Frechet.estimate(groupsA: a, groupsB: b, dim: fs.dim, resamples: resamples)))
        }
        console.clearProgress()
        return Realism(encoderPath: fs.path, encoderFingerprint: fs.fingerprintHex, dim: fs.dim,
                       resolution: fs.resolution, viewsPerImage: V, levels: out, floor: floor)
    }

    func printRealism(_ r: Realism) {
        let n = r.floor.groups
        var lines = ["SSL-feature Frechet distance, decodes vs inputs at the model resolution (encoder \(r.encoderFingerprint), "
                     + "\(r.dim) dims at \(r.resolution) px; \(n) images x \(r.viewsPerImage) views = \(n * r.viewsPerImage) samples; "
                     + "\(Int((r.floor.confidence * 100).rounded()))% bootstrap interval over images, \(r.floor.resamples) resamples):"]
        func cell(_ e: Frechet.Estimate) -> String {
            String(format: "%.4f  [%.4f, %.4f]", e.value, e.low, e.high)
        }
        for (level, e) in r.levels {
            lines.append(RTEval.pad("\(level)", 5) + "  " + cell(e) + (e.groups != n ? "  (\(e.groups) images)" : ""))
        }
        lines.append("floor  " + cell(r.floor) + "  (inputs vs inputs, other views)")
        if n * r.viewsPerImage < 4 * r.dim {
            lines.append("note: fewer samples than 4x the feature dimension: the distance is biased upward")
        }
        IO.writeAllIgnoringErrors(STDOUT_FILENO, Array((lines.joined(separator: "\n") + "\n").utf8))
    }

    static func jsonEstimate(_ e: Frechet.Estimate) -> [String: Any] {
        ["frechet": json(e.value), "low": json(e.low), "high": json(e.high), "images": e.groups, "samples": e.samples]
    }

    static func jsonRealism(_ r: Realism) -> [String: Any] {
        ["feature_encoder": r.encoderFingerprint, "feature_encoder_path": r.encoderPath, "dims": r.dim,
         "resolution": r.resolution, "views_per_image": r.viewsPerImage, "confidence": r.floor.confidence,
         "resamples": r.floor.resamples, "floor": jsonEstimate(r.floor),
         "levels": r.levels.map { l -> [String: Any] in var o = jsonEstimate(l.estimate); o["level"] = l.level; return o }]
    }

    /// --realism --sets A B: the unpaired distance between two image sets, both squashed to the
    /// model resolution first (as the codec sees a picture and as generated images come out).
    func runSets(_ fs: SSLFeatureSpace, size S: Int, console: Console) throws {
        var groups: [[RGBImage]] = []
        var failed = false
        for arg in inputs {
            if arg.hasSuffix(".rtds") {
                // A training-data pack (python/reptok/build_dataset.py): its pictures.
                do {
                    let ds = try PackedDataset(path: arg)
                    guard ds.count >= 2 else { throw CLIError("needs at least 2 images, has \(ds.count)") }
                    groups.append((0..<ds.count).map {
                        Codec.modelView(RGBImage(width: ds.width($0), height: ds.height($0), pixels: Array(ds.pixels($0))), size: S)
                    })
                } catch {
                    console.error(path: arg, "\(error)")
                    throw ExitCode(ExitStatus.failure)
                }
                continue
            }
            var list = Inputs.expand([arg], recursive: true) { RTEval.isImageName($0) }
            if !recursive {
                list.items.removeAll { $0.fromWalk && $0.rel.contains("/") }
                list.errors.removeAll { $0.0 != arg }   // unreadable subdirectories are not wanted
            }
            for (a, m) in list.errors { console.error(path: a, m); failed = true }
            var imgs: [RGBImage] = []
            for item in list.items {
                do {
                    let img = try ImageIO.decode(try IO.readInput(item.path, cap: ImageLimits.default.maxBytes)).image
                    imgs.append(Codec.modelView(img, size: S))
                } catch {
                    console.error(path: item.path, RTEnc.message(error)); failed = true
                }
            }
            guard imgs.count >= 2 else {
                console.error(path: arg, "needs at least 2 images, has \(imgs.count)")
                throw ExitCode(ExitStatus.failure)
            }
            groups.append(imgs)
        }
        let V = views ?? fs.viewsPerImage(images: min(groups[0].count, groups[1].count))
        var feats: [[[Double]]] = []
        var done = 0
        let total = groups[0].count + groups[1].count
        for (k, g) in groups.enumerated() {
            feats.append(g.enumerated().map { i, img in
                done += 1
                console.progress(done: done, total: total, name: "realism: set \(k + 1)")
                return fs.features(img, boxes: SSLFeatureSpace.boxes(count: V, seed: RTEval.realismSeed &+ UInt64(k), image: i))
            })
        }
        console.clearProgress()
        let e = try Frechet.estimateUnpaired(groupsA: feats[0], groupsB: feats[1], dim: fs.dim, resamples: bootstrap)
        if json {
            var o = RTEval.jsonEstimate(e)
            o["sets"] = inputs
            o["images"] = [groups[0].count, groups[1].count]
            o["samples"] = [groups[0].count * V, groups[1].count * V]
            o["views_per_image"] = V
            o["feature_encoder"] = fs.fingerprintHex
            o["dims"] = fs.dim
            o["resolution"] = S
            o["resamples"] = e.resamples
            o["confidence"] = e.confidence
            let data = (try? JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            IO.writeAllIgnoringErrors(STDOUT_FILENO, Array(data) + [0x0A])
        } else {
            var lines = ["SSL-feature Frechet distance between \(Console.show(inputs[0])) (\(groups[0].count) images) and "
                         + "\(Console.show(inputs[1])) (\(groups[1].count) images), both at \(S)x\(S); encoder \(fs.fingerprintHex), "
                         + "\(fs.dim) dims; \(V) views per image:"]
            lines.append(String(format: "%.4f  [%.4f, %.4f]  (%d%% bootstrap interval over images, %d resamples)",
                                e.value, e.low, e.high, Int((e.confidence * 100).rounded()), e.resamples))
            if min(groups[0].count, groups[1].count) * V < 4 * fs.dim {
                lines.append("note: fewer samples than 4x the feature dimension: the distance is biased upward")
            }
            IO.writeAllIgnoringErrors(STDOUT_FILENO, Array((lines.joined(separator: "\n") + "\n").utf8))
        }
        if failed { throw ExitCode(ExitStatus.failure) }
    }
}
