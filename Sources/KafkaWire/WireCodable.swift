/// A structure that reads and writes itself at a given message version. The generated Kafka messages and every
/// structure nested in them conform, so arrays of them can be read and written by one generic helper.
public protocol WireCodable {
    /// Decodes the fields present at `version`; fields absent at that version keep their defaults.
    init(from reader: inout WireReader, version: Int16) throws(WireError)

    /// Encodes the fields present at `version`. Values of fields absent at that version are not written.
    func encode(into writer: inout WireWriter, version: Int16)
}
