/// A closed range of message versions as the JSON writes it: `"3+"`, `"0-4"`, `"2"` or `"none"`.
/// An open-ended range ends at `Int16.max`; an empty range has `lowest > highest`.
public struct VersionRange: Hashable, Sendable, CustomStringConvertible {
    public var lowest: Int16
    public var highest: Int16

    public init(lowest: Int16, highest: Int16) {
        self.lowest = lowest
        self.highest = highest
    }

    public static let none = VersionRange(lowest: 1, highest: 0)
    public static let all = VersionRange(lowest: 0, highest: .max)

    /// Parses Kafka's version-range syntax.
    public init(parsing text: String) throws(GeneratorError) {
        let trimmed = text.trimmingSpaces
        if trimmed == "none" {
            self = .none
        } else if trimmed.hasSuffix("+"), let low = Int16(trimmed.dropLast()) {
            self.init(lowest: low, highest: .max)
        } else if let dash = trimmed.firstIndex(of: "-"),
            let low = Int16(trimmed[..<dash]),
            let high = Int16(trimmed[trimmed.index(after: dash)...])
        {
            self.init(lowest: low, highest: high)
        } else if let single = Int16(trimmed) {
            self.init(lowest: single, highest: single)
        } else {
            throw .invalidSchema("invalid version range \"\(text)\"")
        }
    }

    public var isEmpty: Bool { self.lowest > self.highest }

    public func contains(_ version: Int16) -> Bool { version >= self.lowest && version <= self.highest }

    public func intersection(_ other: VersionRange) -> VersionRange {
        let result = VersionRange(lowest: max(self.lowest, other.lowest), highest: min(self.highest, other.highest))
        return result.isEmpty ? .none : result
    }

    /// The versions of `self` below `other.lowest`, for an open-ended `other` (how taggedVersions are written).
    public func subtractingOpenEnded(_ other: VersionRange) -> VersionRange {
        if other.isEmpty { return self }
        return self.intersection(VersionRange(lowest: 0, highest: other.lowest - 1))
    }

    /// Every version in the range, lowest first.
    public var versions: [Int16] { self.isEmpty ? [] : Array(self.lowest...self.highest) }

    public var description: String {
        if self.isEmpty { return "none" }
        if self.highest == .max { return "\(self.lowest)+" }
        return self.lowest == self.highest ? "\(self.lowest)" : "\(self.lowest)-\(self.highest)"
    }
}

extension String {
    var trimmingSpaces: String {
        var slice = Substring(self)
        while slice.first?.isWhitespace == true { slice = slice.dropFirst() }
        while slice.last?.isWhitespace == true { slice = slice.dropLast() }
        return String(slice)
    }
}
