/// Why a `.properties` text or a setting could not be accepted. The `description` names the setting (and the
/// source, when the caller gave one) in the words Kafka's `ConfigException` uses, so an operator who knows Kafka
/// recognises the message.
///
/// A value type; thread-safe.
public struct PropertiesError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case malformedEscape(line: Int)
        case invalidValue(name: String, value: String, reason: String)
        case missingRequired(name: String)
        case unknownSetting(name: String, suggestion: String?)
    }

    private let code: Code
    /// Where the text came from (a file path, "topic config of t"), or nil when unknown.
    public private(set) var source: String?

    private init(_ code: Code, source: String? = nil) {
        self.code = code
        self.source = source
    }

    /// A `\u` escape without four hexadecimal digits after it (Java's "Malformed \uxxxx encoding").
    public static func malformedEscape(line: Int) -> PropertiesError {
        PropertiesError(.malformedEscape(line: line))
    }

    /// A value that does not parse as the setting's type or that its validator refuses.
    public static func invalidValue(_ value: String, for name: String, reason: String) -> PropertiesError {
        PropertiesError(.invalidValue(name: name, value: value, reason: reason))
    }

    /// A setting without a default that was not given.
    public static func missingRequired(_ name: String) -> PropertiesError {
        PropertiesError(.missingRequired(name: name))
    }

    /// A key no definition in the table has; `suggestion` is the nearest defined name, if one is close.
    public static func unknownSetting(_ name: String, suggestion: String?) -> PropertiesError {
        PropertiesError(.unknownSetting(name: name, suggestion: suggestion))
    }

    /// The same error, saying where the text came from.
    public func from(_ source: String) -> PropertiesError {
        var copy = self
        copy.source = source
        return copy
    }

    /// The setting this error is about, if it is about one.
    public var settingName: String? {
        switch self.code {
        case .malformedEscape: nil
        case .invalidValue(let name, _, _), .missingRequired(let name), .unknownSetting(let name, _): name
        }
    }

    public var description: String {
        let message: String
        switch self.code {
        case .malformedEscape(let line):
            message = "Malformed \\uxxxx encoding on line \(line)"
        case .invalidValue(let name, let value, let reason):
            message = "Invalid value \(value) for configuration \(name): \(reason)"
        case .missingRequired(let name):
            message = "Missing required configuration \"\(name)\" which has no default value."
        case .unknownSetting(let name, let suggestion):
            message =
                "Unknown configuration \"\(name)\"" + (suggestion.map { "; did you mean \"\($0)\"?" } ?? ".")
        }
        guard let source = self.source else { return message }
        return "\(source): \(message)"
    }
}
