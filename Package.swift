// swift-tools-version:5.9
// reptok: a single-token generative image codec (RepTok) with its own small NN engine.
// Layers (each target imports only targets below it, and declares every target it imports):
//   C shims -> RepTokTensor (kernels) -> RepTokNN (layers, optimizer) -> RepTokModels
//   -> RepTokCodec -> RepTokEval -> RepTokCLI, RepTokTrain -> RepTokTrainCLI (rttrain's commands)
//   -> thin executables;
//   RepTokSafeTensors (under RepTokModels), RepTokFormat and RepTokImage (under RepTokCodec) sit on
//   the C shims; RepTokMetrics (under RepTokEval) on RepTokImage; RepTokData (under RepTokCLI and
//   RepTokTrain) on RepTokTensor.
import PackageDescription

let package = Package(
    name: "reptok",
    products: [
        .library(name: "RepTok", targets: ["RepTokSafeTensors", "RepTokTensor", "RepTokNN", "RepTokModels",
                                           "RepTokFormat", "RepTokImage", "RepTokData", "RepTokCodec",
                                           "RepTokMetrics", "RepTokEval"]),
        .executable(name: "rtbench", targets: ["rtbench"]),
        .executable(name: "rtenc", targets: ["rtenc"]),
        .executable(name: "rtdec", targets: ["rtdec"]),
        .executable(name: "rtinfo", targets: ["rtinfo"]),
        .executable(name: "rteval", targets: ["rteval"]),
        .executable(name: "rtgen", targets: ["rtgen"]),
        .executable(name: "rttrain", targets: ["rttrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries (Debian: libzstd-dev, libpng-dev, libjpeg62-turbo-dev).
        // OpenBLAS (Debian: libopenblas0) is loaded at run time by CBLASLoader: see its header.
        .target(name: "CBLASLoader", linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // The image codecs' C side, libjpeg and libpng: they report errors by longjmp/exit, so a
        // small C wrapper runs each whole session and turns them into return codes.
        .target(name: "CImageCodecs", linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),
        // Elementwise kernels, compiled for x86-64 baseline plus an AVX2/FMA clone chosen at run time.
        .target(name: "CRTKernels", linkerSettings: [.linkedLibrary("m")]),

        // safetensors reader/writer (pure Swift + CRTKernels for 16-bit conversions).
        .target(name: "RepTokSafeTensors", dependencies: ["CRTKernels"]),
        .target(name: "RepTokTensor", dependencies: ["CBLASLoader", "CRTKernels"]),
        .target(name: "RepTokNN", dependencies: ["CRTKernels", "RepTokTensor"]),
        .target(name: "RepTokModels", dependencies: ["RepTokNN", "RepTokTensor", "RepTokSafeTensors"]),

        // The .rtk container: records, varints, checksums, caps, zstd payload helpers. No model code.
        .target(name: "RepTokFormat", dependencies: ["CZstd"]),
        // Image decoding/encoding (PNG, JPEG, PPM/PGM) and resampling.
        .target(name: "RepTokImage", dependencies: ["CPNG", "CImageCodecs"]),

        // Image-quality metrics (PSNR, SSIM, MS-SSIM) for rate-quality measurement.
        .target(name: "RepTokMetrics", dependencies: ["RepTokImage"]),
        // The one evaluation harness of the codec (encode, record bytes, decode, metrics; the
        // baselines and report of rttrain eval), and the realism figure (Frechet distance on a
        // frozen SSL encoder's features).
        .target(name: "RepTokEval", dependencies: ["CBLASLoader", "RepTokCodec", "RepTokFormat", "RepTokImage", "RepTokMetrics",
                                                  "RepTokModels", "RepTokSafeTensors", "RepTokTensor"]),

        // Training data: packed whole images, random-resized-crop views.
        .target(name: "RepTokData", dependencies: ["RepTokTensor"]),

        // The codec: quantizer and entropy coders, codec model files (the bundled ones in Models),
        // encode/decode of .rtk records, generation of tokens.
        .target(name: "RepTokCodec", dependencies: ["RepTokModels", "RepTokNN", "RepTokTensor", "RepTokSafeTensors",
                                                   "RepTokFormat", "RepTokImage"],
                resources: [.copy("Models")]),

        // Engine speed: decoder forward, one training step, sgemm rate (compare: tools/bench.sh).
        .executableTarget(name: "rtbench", dependencies: [
            "RepTokModels", "RepTokNN", "RepTokTensor", "RepTokTrain", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // The command-line tools: thin executables over RepTokCLI, which holds the shared option
        // groups and the file handling (temp file + rename, terminal refusal, batch, signals).
        .target(name: "RepTokCLI", dependencies: [
            "RepTokCodec", "RepTokData", "RepTokImage", "RepTokFormat", "RepTokTensor", "RepTokEval", "RepTokMetrics",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "rtenc", dependencies: ["RepTokCLI"]),
        .executableTarget(name: "rtdec", dependencies: ["RepTokCLI"]),
        .executableTarget(name: "rtinfo", dependencies: ["RepTokCLI"]),
        .executableTarget(name: "rteval", dependencies: ["RepTokCLI"]),
        .executableTarget(name: "rtgen", dependencies: ["RepTokCLI"]),

        // Training: the tokenizer (loop, checkpoints, export of codec model files, eval), the SSL
        // encoder (DINO) and the token generator.
        .target(name: "RepTokTrain", dependencies: ["RepTokModels", "RepTokCodec", "RepTokData", "RepTokNN", "RepTokEval",
                                                   "RepTokMetrics", "RepTokTensor", "RepTokSafeTensors", "RepTokFormat", "RepTokImage"]),
        // rttrain's commands (tokenizer, export, eval, ssl, generator), over RepTokCLI's exit
        // statuses and errors: a thin executable, like the other tools.
        .target(name: "RepTokTrainCLI", dependencies: [
            "RepTokTrain", "RepTokCLI", "RepTokFormat", "RepTokTensor", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "rttrain", dependencies: ["RepTokTrainCLI"]),

        // Test helpers shared by the test targets (not in the library product): the tests' draws
        // from RepTokTensor's SplitMix64.
        .target(name: "RepTokTestSupport", dependencies: ["RepTokTensor"], path: "Tests/Support"),
        .testTarget(name: "SafeTensorsTests", dependencies: ["RepTokSafeTensors", "RepTokTensor", "RepTokTestSupport"]),
        .testTarget(name: "FormatTests", dependencies: ["RepTokFormat", "RepTokTensor", "RepTokTestSupport"]),
        .testTarget(name: "ImageTests", dependencies: ["RepTokImage", "CImageCodecs", "RepTokTensor", "RepTokTestSupport"]),
        .testTarget(name: "DataTests", dependencies: ["RepTokData", "RepTokTensor", "RepTokTestSupport"]),
        .testTarget(name: "CodecTests", dependencies: ["RepTokCodec", "RepTokFormat", "RepTokModels", "RepTokSafeTensors", "RepTokTensor",
                                                  "RepTokTestSupport"]),
        // Runs the built rtenc/rtdec/rtinfo/rteval/rtgen/rttrain binaries end to end.
        .testTarget(name: "CLITests", dependencies: [
            "rtenc", "rtdec", "rtinfo", "rteval", "rtgen", "rttrain", "RepTokCodec", "RepTokFormat", "RepTokImage",
            "RepTokSafeTensors", "RepTokModels", "RepTokNN", "RepTokTensor",
        ]),
        .testTarget(name: "RepTokTensorTests", dependencies: ["RepTokTensor", "CRTKernels", "RepTokTestSupport"]),
        .testTarget(name: "TrainTests", dependencies: ["RepTokTrain", "RepTokCodec", "RepTokData", "RepTokEval", "RepTokImage",
                                                   "RepTokMetrics", "RepTokModels", "RepTokNN", "RepTokSafeTensors", "RepTokTensor",
                                                   "RepTokTestSupport"]),
        .testTarget(name: "EvalTests", dependencies: ["RepTokEval", "RepTokImage", "RepTokMetrics", "RepTokTensor"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "RepTokModelsTests", dependencies: ["RepTokModels", "RepTokNN", "RepTokSafeTensors", "RepTokTensor",
                                                          "RepTokTrain", "RepTokTestSupport"],
                    resources: [.copy("Fixtures")]),
    ]
)
