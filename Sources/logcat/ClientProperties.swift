/// `-X key=value` client properties, checked as kcat checks librdkafka's: an unknown name is refused by name, and a
/// bad value is refused with the values the property takes. A value type.
struct ClientProperties {
    /// Why a `-X` was refused, as one line.
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    /// What a property takes, and its description of that for a refusal.
    private enum Kind {
        case choice([String])
        case integer(ClosedRange<Int64>)
        case text

        func accepts(_ value: String) -> Bool {
            switch self {
            case .choice(let values): values.contains(value)
            case .integer(let range): Int64(value).map(range.contains) ?? false
            case .text: true
            }
        }

        var allowed: String {
            switch self {
            case .choice(let values): values.dropLast().joined(separator: ", ") + " or " + values.last!
            case .integer(let range) where range.upperBound == .max: "an integer from \(range.lowerBound)"
            case .integer(let range): "an integer in \(range.lowerBound)...\(range.upperBound)"
            case .text: "any text"
            }
        }
    }

    /// The properties logcat knows, with librdkafka's aliases.
    private static let known: [String: Kind] = [
        "acks": .choice(["all", "-1", "0", "1"]),
        "request.required.acks": .choice(["all", "-1", "0", "1"]),
        "linger.ms": .integer(0...900_000),
        "queue.buffering.max.ms": .integer(0...900_000),
        "batch.size": .integer(1...Int64(Int32.max)),
        "enable.idempotence": .choice(["true", "false"]),
        "compression.type": .choice(["none", "gzip", "snappy", "lz4", "zstd"]),
        "compression.codec": .choice(["none", "gzip", "snappy", "lz4", "zstd"]),
        "buffer.memory": .integer(1...Int64.max),
        "max.in.flight.requests.per.connection": .integer(1...1_000_000),
        "max.in.flight": .integer(1...1_000_000),
        "client.id": .text,
        "bootstrap.servers": .text,
        "metadata.broker.list": .text,
        "auto.offset.reset": .choice(["smallest", "earliest", "beginning", "largest", "latest", "end"]),
    ]

    /// librdkafka's aliases, by the name logcat reads.
    private static let aliases = [
        "request.required.acks": "acks", "queue.buffering.max.ms": "linger.ms", "compression.codec": "compression.type",
        "max.in.flight": "max.in.flight.requests.per.connection", "metadata.broker.list": "bootstrap.servers",
    ]

    private var values: [String: String] = [:]

    /// - Throws: `Invalid` naming the first entry that is not `key=value`, names no known property, or has a value
    ///   the property does not take.
    init(_ entries: [String]) throws {
        for entry in entries {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw Invalid(description: "-X \(entry): expected property=value")
            }
            let name = String(entry[..<equals])
            let value = String(entry[entry.index(after: equals)...])
            guard let kind = Self.known[name] else {
                let names = Self.known.keys.filter { Self.aliases[$0] == nil }.sorted().joined(separator: ", ")
                throw Invalid(description: "-X \(name): no such configuration property (logcat knows \(names))")
            }
            guard kind.accepts(value) else {
                throw Invalid(description: "-X \(name)=\(value): \(name) takes \(kind.allowed)")
            }
            self.values[Self.aliases[name] ?? name] = value
        }
    }

    /// The value given for `name` (logcat's name for it; its alias counts too), the last one when given twice.
    subscript(name: String) -> String? { self.values[name] }
}
