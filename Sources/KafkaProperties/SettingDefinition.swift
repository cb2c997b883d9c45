/// The type of a setting's value, as Kafka's `ConfigDef.Type`, and how text is turned into it.
public enum SettingType: String, Hashable, Sendable {
    case boolean = "BOOLEAN"
    case string = "STRING"
    case int = "INT"
    case long = "LONG"
    case double = "DOUBLE"
    case list = "LIST"
    case password = "PASSWORD"
}

/// A parsed setting value. A value type; thread-safe.
public enum SettingValue: Hashable, Sendable, CustomStringConvertible {
    case boolean(Bool)
    case string(String)
    case int(Int32)
    case long(Int64)
    case double(Double)
    case list([String])
    /// Shown as `[hidden]`, as Kafka's `Password.toString` does.
    case password(String)

    public var type: SettingType {
        switch self {
        case .boolean: .boolean
        case .string: .string
        case .int: .int
        case .long: .long
        case .double: .double
        case .list: .list
        case .password: .password
        }
    }

    public var description: String {
        switch self {
        case .boolean(let value): String(value)
        case .string(let value): value
        case .int(let value): String(value)
        case .long(let value): String(value)
        case .double(let value): String(value)
        case .list(let value): value.joined(separator: ",")
        case .password: "[hidden]"
        }
    }

    /// Parses `text` as Kafka's `ConfigDef.parseType` does: surrounding blanks trimmed, booleans `true`/`false` in
    /// any case, lists split at commas with blanks around items dropped (an empty text is an empty list).
    static func parse(_ text: String, as type: SettingType, name: String) throws(PropertiesError) -> SettingValue {
        let trimmed = text.trimmingBlanks()
        switch type {
        case .boolean:
            switch trimmed.lowercased() {
            case "true": return .boolean(true)
            case "false": return .boolean(false)
            default: throw .invalidValue(text, for: name, reason: "Expected value to be either true or false")
            }
        case .string:
            return .string(trimmed)
        case .password:
            return .password(trimmed)
        case .int:
            guard let value = Int32(trimmed) else {
                throw .invalidValue(text, for: name, reason: "Not a number of type INT")
            }
            return .int(value)
        case .long:
            guard let value = Int64(trimmed) else {
                throw .invalidValue(text, for: name, reason: "Not a number of type LONG")
            }
            return .long(value)
        case .double:
            guard let value = Double(trimmed), value.isFinite else {
                throw .invalidValue(text, for: name, reason: "Not a number of type DOUBLE")
            }
            return .double(value)
        case .list:
            guard !trimmed.isEmpty else { return .list([]) }
            return .list(
                trimmed.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingBlanks() })
        }
    }
}

/// What values a setting accepts beyond its type (Kafka's `ConfigDef.Range`, `ValidString`, `ValidList`).
/// Its message for a refused value lists what is allowed. A value type; thread-safe.
public struct SettingValidator: Sendable, CustomStringConvertible {
    private let check: @Sendable (SettingValue) -> String?
    /// The allowed values in words, as Kafka's `ConfigDef` documentation prints them ("[14,...]").
    public let description: String

    /// A custom rule: `check` returns nil to accept, or the reason for refusing.
    public init(description: String, check: @escaping @Sendable (SettingValue) -> String?) {
        self.description = description
        self.check = check
    }

    /// The reason `value` is refused, or nil if it is accepted.
    public func reason(refusing value: SettingValue) -> String? {
        self.check(value)
    }

    /// Numbers from `minimum` up (Kafka's `Range.atLeast`).
    public static func atLeast(_ minimum: Int64) -> SettingValidator {
        .between(minimum, nil)
    }

    /// Numbers within `minimum...maximum` (Kafka's `Range.between`); nil leaves that side open.
    public static func between(_ minimum: Int64?, _ maximum: Int64?) -> SettingValidator {
        let text = "[\(minimum.map(String.init) ?? "..."),...\(maximum.map { ",\($0)" } ?? "")]"
        return SettingValidator(description: text) { value in
            let number: Int64
            switch value {
            case .int(let value): number = Int64(value)
            case .long(let value): number = value
            case .double(let value):
                if let minimum, value < Double(minimum) { return "Value must be at least \(minimum)" }
                if let maximum, value > Double(maximum) { return "Value must be no more than \(maximum)" }
                return nil
            default: return nil
            }
            if let minimum, number < minimum { return "Value must be at least \(minimum)" }
            if let maximum, number > maximum { return "Value must be no more than \(maximum)" }
            return nil
        }
    }

    /// A string among `allowed` (Kafka's `ValidString.in`), or, for a list, every item among them
    /// (`ValidList.in`). Case matters unless `caseSensitive` is false (Kafka's `CaseInsensitiveValidString`).
    public static func oneOf(_ allowed: [String], caseSensitive: Bool = true) -> SettingValidator {
        let folded = Set(allowed.map { caseSensitive ? $0 : $0.lowercased() })
        let isAllowed: @Sendable (String) -> Bool = { folded.contains(caseSensitive ? $0 : $0.lowercased()) }
        let reason = "String must be one of: \(allowed.joined(separator: ", "))"
        return SettingValidator(description: "[\(allowed.joined(separator: ", "))]") { value in
            switch value {
            case .string(let string): return isAllowed(string) ? nil : reason
            case .list(let items): return items.allSatisfy(isAllowed) ? nil : reason
            default: return nil
            }
        }
    }
}

/// One setting's definition, as a row of Kafka's `ConfigDef`: name, type, default, validator, documentation.
/// The owner of a setting (the log, the broker, a tool) declares its rows in its own `SettingsTable`.
///
/// A value type; thread-safe.
public struct SettingDefinition: Sendable {
    public let name: String
    public let type: SettingType
    /// nil for a required setting.
    public let defaultValue: SettingValue?
    public let validator: SettingValidator?
    public let documentation: String

    /// A definition; `defaultValue` must be of `type` and pass the validator (checked: a bad table is a bug).
    public init(
        _ name: String,
        _ type: SettingType,
        default defaultValue: SettingValue?,
        validator: SettingValidator? = nil,
        documentation: String = ""
    ) {
        precondition(defaultValue == nil || defaultValue?.type == type, "default of \(name) is not of type \(type)")
        if let defaultValue, let validator, let reason = validator.reason(refusing: defaultValue) {
            preconditionFailure("default of \(name) is refused by its validator: \(reason)")
        }
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.validator = validator
        self.documentation = documentation
    }

    /// Parses and validates the text given for this setting.
    public func parse(_ text: String) throws(PropertiesError) -> SettingValue {
        let value = try SettingValue.parse(text, as: self.type, name: self.name)
        if let validator = self.validator, let reason = validator.reason(refusing: value) {
            throw .invalidValue(text.trimmingBlanks(), for: self.name, reason: reason)
        }
        return value
    }
}

extension String {
    /// Without leading and trailing spaces, tabs, line ends and other ASCII control characters (Java's `trim`).
    func trimmingBlanks() -> String {
        let scalars = self.unicodeScalars
        guard let first = scalars.firstIndex(where: { $0.value > 0x20 }) else { return "" }
        let last = scalars.lastIndex(where: { $0.value > 0x20 })!
        return String(scalars[first...last])
    }
}
