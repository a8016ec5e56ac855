import XCTest
import RepTokImage

final class ImageGridTests: XCTestCase {
    func testCellsGapsAndPNG() throws {
        var g = ImageGrid(rows: 2, columns: 3, cell: 4)
        XCTAssertEqual(g.image.width, 3 * 4 + 4 * 2)
        XCTAssertEqual(g.image.height, 2 * 4 + 3 * 2)
        XCTAssertTrue(g.image.pixels.allSatisfy { $0 == 255 })
        let cell = RGBImage(width: 4, height: 4, pixels: (0..<48).map { UInt8($0) })
        g.place(cell, row: 1, column: 2)
        // the cell's top-left pixel lands at (gap + 2 (cell + gap), gap + (cell + gap)) = (14, 8)
        for y in 0..<4 { for x in 0..<4 { XCTAssertTrue(g.image[14 + x, 8 + y] == cell[x, y]) } }
        // everything else stays white
        var white = 0
        for y in 0..<g.image.height { for x in 0..<g.image.width where g.image[x, y] == (255, 255, 255) { white += 1 } }
        XCTAssertEqual(white, g.image.width * g.image.height - 16)
        let back = try ImageIO.decode(try g.png()).image
        XCTAssertEqual(back, g.image)
    }
}
