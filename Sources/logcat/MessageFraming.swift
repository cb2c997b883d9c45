import LogBrokerClient

/// Splits a byte stream into messages at a delimiter, across reads. The piece after the last delimiter is a
/// message only if it is not empty (input ending with the delimiter gives no empty last message). Not thread-safe.
struct DelimitedReader {
    let delimiter: [UInt8]
    private var pending: [UInt8] = []

    init(delimiter: [UInt8]) {
        self.delimiter = delimiter
    }

    /// The messages completed by `chunk`.
    mutating func feed(_ chunk: some Sequence<UInt8>) -> [[UInt8]] {
        let searchFrom = max(0, self.pending.count - self.delimiter.count + 1)
        self.pending.append(contentsOf: chunk)
        var messages: [[UInt8]] = []
        var start = 0
        var index = searchFrom
        while index + self.delimiter.count <= self.pending.count {
            if self.pending[index..<(index + self.delimiter.count)].elementsEqual(self.delimiter) {
                messages.append(Array(self.pending[start..<index]))
                index += self.delimiter.count
                start = index
            } else {
                index += 1
            }
        }
        self.pending.removeFirst(start)
        return messages
    }

    /// The last message at the end of the input, if any.
    mutating func finish() -> [[UInt8]] {
        defer { self.pending = [] }
        return self.pending.isEmpty ? [] : [self.pending]
    }
}

/// kcat's consumer output: `-J`'s JSON envelope, else `-f FORMAT` with its tokens, else the value (prefixed by the
/// key and `-K`'s delimiter when given) followed by `-D`'s delimiter. Stateless.
struct MessageFormatter: Sendable {
    let format: [UInt8]?
    let json: Bool
    let delimiter: [UInt8]
    let keyDelimiter: [UInt8]?

    init(format: String?, json: Bool = false, delimiter: [UInt8], keyDelimiter: [UInt8]?) throws {
        self.format = try format.map(Escapes.decode)
        self.json = json
        self.delimiter = delimiter
        self.keyDelimiter = keyDelimiter
    }

    func format(_ record: ConsumerRecord) -> [UInt8] {
        if self.json { return JSONEnvelope.encode(record) + self.delimiter }
        guard let format = self.format else {
            var out: [UInt8] = []
            if let keyDelimiter = self.keyDelimiter { out += (record.key ?? []) + keyDelimiter }
            return out + (record.value ?? []) + self.delimiter
        }
        var out: [UInt8] = []
        var index = format.startIndex
        while index < format.endIndex {
            let byte = format[index]
            guard byte == UInt8(ascii: "%"), index + 1 < format.endIndex else {
                out.append(byte)
                index += 1
                continue
            }
            let token = format[index + 1]
            index += 2
            switch token {
            case UInt8(ascii: "t"): out += Array(record.topic.utf8)
            case UInt8(ascii: "p"): out += Array(String(record.partition).utf8)
            case UInt8(ascii: "o"): out += Array(String(record.offset).utf8)
            case UInt8(ascii: "k"): out += record.key ?? []
            case UInt8(ascii: "K"): out += Array(String(record.key?.count ?? -1).utf8)
            case UInt8(ascii: "s"): out += record.value ?? []
            case UInt8(ascii: "S"): out += Array(String(record.value?.count ?? -1).utf8)
            case UInt8(ascii: "T"): out += Array(String(record.timestamp).utf8)
            case UInt8(ascii: "h"):
                let pairs = record.headers.map { [UInt8]($0.key.utf8) + [UInt8(ascii: "=")] + ($0.value ?? []) }
                out += Array(pairs.joined(separator: [UInt8(ascii: ",")]))
            case UInt8(ascii: "%"): out.append(UInt8(ascii: "%"))
            default: out += [UInt8(ascii: "%"), token]
            }
        }
        return out
    }
}
