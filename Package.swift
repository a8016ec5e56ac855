// swift-tools-version:5.9
// reptok: a single-token generative image codec (RepTok) with its own small NN engine.
// Layers: C shims -> RepTokTensor (kernels) -> RepTokNN (layers, optimizer) -> RepTokModels -> codec -> CLIs.
import PackageDescription

let package = Package(
    name: "reptok",
    products: [
        .library(name: "RepTok", targets: ["RepTokTensor", "RepTokNN", "RepTokModels"]),
        .executable(name: "rtbench", targets: ["rtbench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libzstd-dev, libpng-dev, libjpeg62-turbo-dev).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // libjpeg reports errors by longjmp/exit: a small C wrapper turns them into return codes.
        .target(name: "CJPEGShim", linkerSettings: [.linkedLibrary("jpeg")]),
        // Elementwise kernels, compiled for x86-64 baseline plus an AVX2/FMA clone chosen at run time.
        .target(name: "CRTKernels", linkerSettings: [.linkedLibrary("m")]),

        .target(name: "RepTokTensor", dependencies: ["COpenBLAS", "CRTKernels"]),
        .target(name: "RepTokNN", dependencies: ["RepTokTensor"]),
        .target(name: "RepTokModels", dependencies: ["RepTokNN", "RepTokTensor"]),

        .executableTarget(name: "rtbench", dependencies: [
            "RepTokModels", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "RepTokTensorTests", dependencies: ["RepTokTensor", "RepTokNN"]),
        .testTarget(name: "RepTokModelsTests", dependencies: ["RepTokModels"],
                    resources: [.copy("Fixtures")]),
    ]
)
