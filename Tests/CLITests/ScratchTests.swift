import XCTest
@testable import RepTokCodec

final class ScratchTests: XCTestCase {
    func testMakeModels() throws {
        try TestModel.write(to: "/tmp/rtk-tiny.safetensors")
        var big = TestModel.Shape()
        big.imageSize = 64; big.patch = 4; big.hidden = 32; big.decoderWidth = 128; big.decoderDepth = 4; big.heads = 4
        try TestModel.write(to: "/tmp/rtk-big.safetensors", shape: big)
        let imgs: [(String, [UInt8])] = [("a.png", TestImages.png()), ("b.jpg", TestImages.jpeg()), ("c.ppm", TestImages.ppm())]
        for (n, b) in imgs { writeBytes("/tmp/rtk-imgs/" + n, b) }
        print("products", Tools.productsDir)
    }
}
