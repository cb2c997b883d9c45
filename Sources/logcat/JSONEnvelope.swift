import KafkaRecords
import LogBrokerClient

/// kcat's `-J` envelope of a consumed message, one line once the caller adds `-D`'s delimiter (a newline by
/// default): topic, partition, offset, tstype ("create", "logappend"), ts, broker, headers (a flat array name, value,
/// name, value, ..., left out when the message has none, as kcat 1.7 does), key and payload (null when null).
/// Strings are escaped as kcat's JSON library (yajl) does: `"`, `\`, the usual control escapes and `\u00XX` for the
/// other control bytes; every other byte goes out as it is, so binary keys and values stay byte for byte what kcat
/// prints. Stateless.
enum JSONEnvelope {
    static func encode(_ record: ConsumerRecord) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96 + (record.key?.count ?? 0) + (record.value?.count ?? 0))
        out += Array(#"{"topic":"#.utf8)
        Self.appendString(record.topic.utf8, to: &out)
        out += Array(#","partition":\#(record.partition),"offset":\#(record.offset),"tstype":"#.utf8)
        out += Array((record.timestampType == .logAppendTime ? #""logappend""# : #""create""#).utf8)
        out += Array(#","ts":\#(record.timestamp),"broker":\#(record.broker)"#.utf8)
        if !record.headers.isEmpty {
            out += Array(#","headers":["#.utf8)
            for (index, header) in record.headers.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.appendString(header.key.utf8, to: &out)
                out.append(UInt8(ascii: ","))
                Self.appendNullable(header.value, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out += Array(#","key":"#.utf8)
        Self.appendNullable(record.key, to: &out)
        out += Array(#","payload":"#.utf8)
        Self.appendNullable(record.value, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func appendNullable(_ bytes: [UInt8]?, to out: inout [UInt8]) {
        if let bytes { Self.appendString(bytes, to: &out) } else { out += Array("null".utf8) }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    static func appendString(_ bytes: some Sequence<UInt8>, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in bytes {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0x08: out += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: out += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0..<0x20:
                out += Array("\\u00".utf8)
                out += [Self.hexDigits[Int(byte >> 4)], Self.hexDigits[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
