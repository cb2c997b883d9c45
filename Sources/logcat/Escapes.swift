/// kcat's escapes in delimiters and formats: `\n`, `\r`, `\t`, `\\`, `\0` and `\xNN`. Stateless.
enum Escapes {
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    /// The bytes `text` stands for.
    static func decode(_ text: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var input = Array(text.utf8)[...]
        while let byte = input.popFirst() {
            guard byte == UInt8(ascii: "\\"), let next = input.popFirst() else {
                bytes.append(byte)
                continue
            }
            switch next {
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "0"): bytes.append(0)
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "x"):
                let digits = input.prefix(2)
                guard digits.count == 2, let value = UInt8(String(decoding: digits, as: UTF8.self), radix: 16) else {
                    throw Invalid(description: "bad \\x escape in '\(text)': two hex digits are needed")
                }
                bytes.append(value)
                input = input.dropFirst(2)
            default:
                bytes.append(UInt8(ascii: "\\"))
                bytes.append(next)
            }
        }
        return bytes
    }
}
