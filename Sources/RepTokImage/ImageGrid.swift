/// A contact sheet of square pictures: `rows` x `columns` cells of `cell` x `cell` pixels on
/// white, `gap` white pixels between cells and around them. The one grid writer of the tools
/// (`rtgen --grid`, `rttrain eval --grid`).
public struct ImageGrid: Sendable {
    public let rows: Int
    public let columns: Int
    public let cell: Int
    public let gap: Int
    /// The sheet; cells not placed stay white.
    public private(set) var image: RGBImage

    public init(rows: Int, columns: Int, cell: Int, gap: Int = 2) {
        precondition(rows >= 1 && columns >= 1 && cell >= 1 && gap >= 0, "ImageGrid: bad layout")
        self.rows = rows; self.columns = columns; self.cell = cell; self.gap = gap
        let W = columns * cell + (columns + 1) * gap, H = rows * cell + (rows + 1) * gap
        image = RGBImage(width: W, height: H, pixels: [UInt8](repeating: 255, count: W * H * 3))
    }

    /// Puts `picture` (cell x cell) into the cell at (`row`, `column`).
    public mutating func place(_ picture: RGBImage, row: Int, column: Int) {
        precondition(picture.width == cell && picture.height == cell, "ImageGrid: a \(picture.width)x\(picture.height) picture in \(cell) px cells")
        precondition((0..<rows).contains(row) && (0..<columns).contains(column), "ImageGrid: no cell (\(row), \(column))")
        let W = image.width, S = cell
        let x0 = gap + column * (S + gap), y0 = gap + row * (S + gap)
        for y in 0..<S {
            let dst = ((y0 + y) * W + x0) * 3
            image.pixels.replaceSubrange(dst..<dst + S * 3, with: picture.pixels[(y * S * 3)..<((y + 1) * S * 3)])
        }
    }

    /// The sheet as PNG bytes.
    public func png() throws -> [UInt8] { try ImageIO.encode(image, format: .png) }
}
