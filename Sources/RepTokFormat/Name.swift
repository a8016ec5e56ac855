// Record names: a plain relative path that is safe to join under an output directory.
// Rules (rtk.5, NAMES): 1-255 bytes of valid UTF-8; no control characters (Unicode Cc: C0,
// DEL, C1), so no NUL; no backslash; not absolute ('/' first, or a Windows drive "X:");
// '/'-separated components that are neither empty, "." nor "..".

enum RTKName {
    /// Validates raw name bytes and returns the name (the exact bytes, not normalized).
    static func validate(_ bytes: UnsafeRawBufferPointer) throws -> String {
        if bytes.isEmpty { throw RTKError.badName(.empty) }
        if bytes.count > RTKFormat.maxNameBytes { throw RTKError.badName(.tooLong(UInt64(bytes.count))) }
        guard let name = String(validating: bytes, as: UTF8.self) else {
            throw RTKError.badName(.invalidUTF8)
        }
        try checkPath(name)
        return name
    }

    /// Validates a name given as a String (writer side).
    static func validate(_ name: String) throws {
        _ = try Array(name.utf8).withUnsafeBytes { try validate($0) }
    }

    private static func checkPath(_ name: String) throws {
        for scalar in name.unicodeScalars {
            if scalar == "\\" { throw RTKError.badName(.backslash) }
            if scalar.properties.generalCategory == .control {
                throw RTKError.badName(.controlCharacter(scalar.value))
            }
        }
        let utf8 = Array(name.utf8)
        if utf8.first == UInt8(ascii: "/") { throw RTKError.badName(.absolute) }
        if utf8.count >= 2, utf8[1] == UInt8(ascii: ":"),
           (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(utf8[0] & 0xDF) {
            throw RTKError.badName(.driveLetter)
        }
        for component in utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.isEmpty { throw RTKError.badName(.emptyComponent) }
            if component.elementsEqual([UInt8(ascii: ".")]) { throw RTKError.badName(.dotComponent) }
            if component.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                throw RTKError.badName(.dotDotComponent)
            }
        }
    }
}
