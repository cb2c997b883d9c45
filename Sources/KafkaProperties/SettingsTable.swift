/// The settings one owner understands (the log's, the broker's, a tool's), like a Kafka `ConfigDef`: it turns the
/// text of `.properties` pairs into typed `Settings`, refusing bad values with the allowed ones named and unknown
/// keys with the nearest known name suggested.
///
/// A value type, built once and then only read; thread-safe.
public struct SettingsTable: Sendable {
    /// The rows in declaration order.
    public let definitions: [SettingDefinition]
    private let byName: [String: Int]

    /// A table of `definitions`; two rows with one name are a bug and stop the process.
    public init(_ definitions: [SettingDefinition]) {
        var byName: [String: Int] = [:]
        for (index, definition) in definitions.enumerated() {
            precondition(byName.updateValue(index, forKey: definition.name) == nil, "\(definition.name) defined twice")
        }
        self.definitions = definitions
        self.byName = byName
    }

    public subscript(name: String) -> SettingDefinition? {
        self.byName[name].map { self.definitions[$0] }
    }

    /// What to do with a key the table does not define.
    public enum UnknownKeys: Sendable {
        /// Fail, as Kafka does for topic configs (`INVALID_CONFIG`).
        case reject
        /// Keep them in `Settings.unknown`, so the caller can warn, as Kafka's broker does for
        /// `server.properties` ("These configurations ... were supplied but are not used yet").
        case collect
    }

    /// The typed settings for `properties`: given values parsed and validated, defaults for the rest.
    /// - Throws: the first invalid value or missing required setting in table order, or, with `.reject`, the
    ///   first unknown key in `properties` order.
    public func resolve(_ properties: Properties, unknownKeys: UnknownKeys = .reject) throws(PropertiesError)
        -> Settings
    {
        var values: [String: SettingValue] = [:]
        var explicit: Set<String> = []
        for definition in self.definitions {
            if let text = properties[definition.name] {
                values[definition.name] = try definition.parse(text)
                explicit.insert(definition.name)
            } else if let defaultValue = definition.defaultValue {
                values[definition.name] = defaultValue
            } else {
                throw .missingRequired(definition.name)
            }
        }
        var unknown = Properties()
        for (key, value) in properties where self.byName[key] == nil {
            if case .reject = unknownKeys { throw .unknownSetting(key, suggestion: self.suggestion(for: key)) }
            unknown[key] = value
        }
        return Settings(table: self, values: values, explicit: explicit, unknown: unknown)
    }

    /// The defined name nearest to `key` by edit distance, if it is close enough to be a likely typo (at most a
    /// third of the key's length, and at least one edit), or one whose dotted words are the same set.
    public func suggestion(for key: String) -> String? {
        let limit = max(1, key.count / 3)
        var best: (name: String, distance: Int)?
        for definition in self.definitions {
            let distance = editDistance(key.lowercased(), definition.name.lowercased(), limit: limit)
            if distance <= limit, distance < best?.distance ?? Int.max { best = (definition.name, distance) }
        }
        if let best { return best.name }
        let words = Set(key.lowercased().split(separator: ".").map(String.init))
        return self.definitions.first { Set($0.name.split(separator: ".").map(String.init)) == words }?.name
    }
}

/// Levenshtein distance between `a` and `b`, or some value above `limit` once it is certain to exceed it.
func editDistance(_ a: String, _ b: String, limit: Int) -> Int {
    let a = Array(a.unicodeScalars)
    let b = Array(b.unicodeScalars)
    guard abs(a.count - b.count) <= limit else { return limit + 1 }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...max(a.count, 1) where !a.isEmpty {
        current[0] = i
        var rowMinimum = current[0]
        for j in 1...max(b.count, 1) where !b.isEmpty {
            let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            rowMinimum = min(rowMinimum, current[j])
        }
        if rowMinimum > limit { return limit + 1 }
        swap(&previous, &current)
    }
    return a.isEmpty ? b.count : previous[b.count]
}

/// Resolved settings of one table: every defined name has a value. Typed getters stop the process when asked for a
/// name the table lacks or with the wrong type, since that is a bug in the owner's code, not bad input.
///
/// A value type; thread-safe.
public struct Settings: Sendable {
    public let table: SettingsTable
    private let values: [String: SettingValue]
    private let explicit: Set<String>
    /// Keys the table does not define, kept when resolved with `.collect`.
    public let unknown: Properties

    init(table: SettingsTable, values: [String: SettingValue], explicit: Set<String>, unknown: Properties) {
        self.table = table
        self.values = values
        self.explicit = explicit
        self.unknown = unknown
    }

    /// The value of `name`, nil if the table does not define it.
    public subscript(name: String) -> SettingValue? { self.values[name] }

    /// True when `name` was given rather than defaulted (DescribeConfigs' `is_default` is its negation).
    public func isExplicit(_ name: String) -> Bool { self.explicit.contains(name) }

    public func bool(_ name: String) -> Bool {
        guard case .boolean(let value) = self.value(name) else { self.wrongType(name, .boolean) }
        return value
    }

    public func string(_ name: String) -> String {
        switch self.value(name) {
        case .string(let value), .password(let value): return value
        default: self.wrongType(name, .string)
        }
    }

    public func int(_ name: String) -> Int32 {
        guard case .int(let value) = self.value(name) else { self.wrongType(name, .int) }
        return value
    }

    public func long(_ name: String) -> Int64 {
        switch self.value(name) {
        case .long(let value): return value
        case .int(let value): return Int64(value)
        default: self.wrongType(name, .long)
        }
    }

    public func double(_ name: String) -> Double {
        guard case .double(let value) = self.value(name) else { self.wrongType(name, .double) }
        return value
    }

    public func list(_ name: String) -> [String] {
        guard case .list(let value) = self.value(name) else { self.wrongType(name, .list) }
        return value
    }

    private func value(_ name: String) -> SettingValue {
        guard let value = self.values[name] else { preconditionFailure("\(name) is not defined in this table") }
        return value
    }

    private func wrongType(_ name: String, _ type: SettingType) -> Never {
        preconditionFailure("\(name) is \(self.values[name]!.type), not \(type)")
    }
}
