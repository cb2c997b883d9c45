/// The key-value pairs of one `.properties` text, in Java's `Properties.load` format, which is how Kafka reads
/// `server.properties`, `meta.properties` and the tools' `--command-config` files.
///
/// The grammar, as Java's: lines end at `\n`, `\r` or `\r\n`; a line whose first non-blank character is `#` or `!`
/// is a comment; a line ending in an odd number of backslashes continues on the next, whose leading blanks are
/// dropped; the key ends at the first unescaped `=`, `:` or blank, then blanks, at most one `=` or `:`, and blanks
/// are skipped; `\t`, `\n`, `\r`, `\f` and `\uXXXX` are escapes and a backslash before any other character stands
/// for that character. A later duplicate key replaces the earlier value, keeping the first one's position.
/// One difference: the text is Unicode (Swift `String`), where Java's byte-stream loader reads ISO-8859-1.
///
/// A value type; thread-safe.
public struct Properties: Hashable, Sendable, Sequence {
    /// The pairs in the order their keys first appeared.
    public var entries: [(key: String, value: String)] {
        self.keys.map { ($0, self.values[$0]!) }
    }
    private var keys: [String] = []
    private var values: [String: String] = [:]

    public init() {}

    public init(_ pairs: [(String, String)]) {
        for (key, value) in pairs { self[key] = value }
    }

    /// Parses `text`; throws only for a malformed `\u` escape, as Java does.
    public init(parsing text: String) throws(PropertiesError) {
        var parser = PropertiesParser(text)
        while let (key, value) = try parser.nextPair() { self[key] = value }
    }

    public subscript(key: String) -> String? {
        get { self.values[key] }
        set {
            if let newValue {
                if self.values.updateValue(newValue, forKey: key) == nil { self.keys.append(key) }
            } else if self.values.removeValue(forKey: key) != nil {
                self.keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { self.keys.count }
    public var isEmpty: Bool { self.keys.isEmpty }

    /// The values by key, for callers that do not care about order.
    public var dictionary: [String: String] { self.values }

    public func makeIterator() -> some IteratorProtocol<(key: String, value: String)> {
        self.keys.lazy.map { (key: $0, value: self.values[$0]!) }.makeIterator()
    }

    /// The text of these pairs in the same format, one `key=value` line each, escaped so that parsing it gives
    /// the same pairs back. `comment` lines (without `#`) go first, as Java's `Properties.store` writes its header.
    public func formatted(comment: [String] = []) -> String {
        var text = ""
        for line in comment { text += "#\(line)\n" }
        for key in self.keys {
            text += Self.escape(key, isKey: true) + "=" + Self.escape(self.values[key]!, isKey: false) + "\n"
        }
        return text
    }

    private static func escape(_ string: String, isKey: Bool) -> String {
        var out = ""
        for (index, scalar) in string.unicodeScalars.enumerated() {
            switch scalar {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\u{0C}": out += "\\f"
            case "=", ":", "#", "!": out += "\\" + String(scalar)
            case " " where isKey || index == 0: out += "\\ "
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    public static func == (lhs: Properties, rhs: Properties) -> Bool {
        lhs.keys == rhs.keys && lhs.values == rhs.values
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.keys)
        hasher.combine(self.values)
    }
}

/// Splits text into logical lines and key-value pairs. A value used once by `Properties.init(parsing:)`.
private struct PropertiesParser {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var lineNumber = 0

    init(_ text: String) {
        self.scalars = Array(text.unicodeScalars)
    }

    private static func isBlank(_ scalar: Unicode.Scalar) -> Bool {
        scalar == " " || scalar == "\t" || scalar == "\u{0C}"
    }

    private static func isLineEnd(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\n" || scalar == "\r"
    }

    /// One natural line without its terminator, or nil at the end of the text.
    private mutating func naturalLine() -> ArraySlice<Unicode.Scalar>? {
        guard self.index < self.scalars.count else { return nil }
        let start = self.index
        while self.index < self.scalars.count, !Self.isLineEnd(self.scalars[self.index]) { self.index += 1 }
        let line = self.scalars[start..<self.index]
        if self.index < self.scalars.count {
            if self.scalars[self.index] == "\r", self.index + 1 < self.scalars.count,
                self.scalars[self.index + 1] == "\n"
            {
                self.index += 2
            } else {
                self.index += 1
            }
        }
        self.lineNumber += 1
        return line
    }

    /// The next logical line (continuations joined, the joining backslash and next line's leading blanks
    /// dropped), skipping blank and comment lines. Escapes are still in place.
    private mutating func logicalLine() -> (scalars: [Unicode.Scalar], line: Int)? {
        while let first = self.naturalLine() {
            let firstLine = self.lineNumber
            let content = first.drop(while: Self.isBlank)
            guard let lead = content.first, lead != "#", lead != "!" else { continue }
            var joined = Array(content)
            while Self.endsWithOddBackslashes(joined) {
                joined.removeLast()
                guard let next = self.naturalLine() else { break }
                joined += next.drop(while: Self.isBlank)
            }
            return (joined, firstLine)
        }
        return nil
    }

    private static func endsWithOddBackslashes(_ line: [Unicode.Scalar]) -> Bool {
        var count = 0
        for scalar in line.reversed() {
            guard scalar == "\\" else { break }
            count += 1
        }
        return count % 2 == 1
    }

    mutating func nextPair() throws(PropertiesError) -> (String, String)? {
        guard let (line, number) = self.logicalLine() else { return nil }
        var keyEnd = 0
        var escaped = false
        while keyEnd < line.count {
            let scalar = line[keyEnd]
            if escaped {
                escaped = false
            } else if scalar == "\\" {
                escaped = true
            } else if scalar == "=" || scalar == ":" || Self.isBlank(scalar) {
                break
            }
            keyEnd += 1
        }
        var valueStart = keyEnd
        while valueStart < line.count, Self.isBlank(line[valueStart]) { valueStart += 1 }
        if valueStart < line.count, line[valueStart] == "=" || line[valueStart] == ":" {
            valueStart += 1
            while valueStart < line.count, Self.isBlank(line[valueStart]) { valueStart += 1 }
        }
        let key = try Self.unescape(line[0..<keyEnd], line: number)
        let value = try Self.unescape(line[valueStart...], line: number)
        return (key, value)
    }

    private static func unescape(_ scalars: ArraySlice<Unicode.Scalar>, line: Int) throws(PropertiesError) -> String {
        var out = String.UnicodeScalarView()
        var index = scalars.startIndex
        while index < scalars.endIndex {
            let scalar = scalars[index]
            index += 1
            guard scalar == "\\", index < scalars.endIndex else {
                out.append(scalar)
                continue
            }
            let escaped = scalars[index]
            index += 1
            switch escaped {
            case "t": out.append("\t")
            case "n": out.append("\n")
            case "r": out.append("\r")
            case "f": out.append("\u{0C}")
            case "u":
                guard index + 4 <= scalars.endIndex else { throw .malformedEscape(line: line) }
                var value: UInt32 = 0
                for digit in scalars[index..<index + 4] {
                    guard let nibble = Int(String(digit), radix: 16) else { throw .malformedEscape(line: line) }
                    value = value << 4 | UInt32(nibble)
                }
                index += 4
                // A lone surrogate half cannot be a Swift scalar; Java would keep it, we substitute U+FFFD.
                out.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            default:
                out.append(escaped)
            }
        }
        return String(out)
    }
}
