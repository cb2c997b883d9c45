import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import NIOCore

/// The broker's request decoding, from a frame's contents (what follows the 4-byte size) to the checks a Produce's
/// records get, as `logbroker-server` runs it on untrusted bytes:
/// 1. the request header (`KafkaRequestEnvelope`), refusing unknown keys;
/// 2. the body at its version with the default wire limits, requiring every byte to be used;
/// 3. for a decoded request, encode it again and decode that: it must give the same value (a decoder that
///    accepts what the encoder cannot reproduce would answer a different request than the client sent);
/// 4. for Produce, every partition's records through the splitter and the validator (CRC, codecs, record walk),
///    with the broker's decompression limit; a magic 0/1 message set (Produce v0-2) through the converter first, and
///    the v2 batch it gives through the validator.
/// Errors are expected outcomes; only a crash, a hang, a leak or an allocation past libFuzzer's limits is a finding.
enum RequestFuzzer {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        let frame = ByteBuffer(bytes: bytes)
        guard let envelope = try? KafkaRequestEnvelope(parsing: frame),
            let api = KafkaMessageRegistry.api(envelope.apiKey),
            api.validVersions.contains(envelope.apiVersion)
        else { return }
        Self.roundTrip(api.requestType, envelope)
    }

    private static func roundTrip<Request: KafkaRequest>(_ type: Request.Type, _ envelope: KafkaRequestEnvelope) {
        guard let request = try? envelope.decodeBody(as: Request.self) else { return }
        var writer = WireWriter()
        request.encode(into: &writer, version: envelope.apiVersion)
        var reader = WireReader(buffer: writer.buffer)
        let again: Request
        do {
            again = try Request(decoding: &reader, version: envelope.apiVersion)
        } catch {
            fatalError("\(Request.self) v\(envelope.apiVersion) decoded, but its re-encoding does not: \(error)")
        }
        precondition(again == request, "\(Request.self) v\(envelope.apiVersion) changed across encode and decode")
        if let produce = request as? ProduceRequest { Self.validate(produce) }
    }

    private static func validate(_ produce: ProduceRequest) {
        var validator = RecordBatchValidator(options: .init(maxDecompressedBytes: 8 << 20))
        var converter = LegacyMessageSetConverter(
            options: .init(maxMessageBytes: 1 << 20, maxDecompressedBytes: 8 << 20)
        )
        for topic in produce.topicData {
            for partition in topic.partitionData {
                var records = partition.records ?? ByteBuffer()
                if LegacyMessageSet.legacyMagic(of: records) != nil {
                    guard let converted = try? converter.convert(records) else { continue }
                    records = converted.batch.buffer
                }
                var splitter = RecordBatchSplitter(records)
                while let batch = try? splitter.next() {
                    _ = try? validator.validate(batch)
                }
            }
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    RequestFuzzer.run(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}

#if !LOGBROKER_FUZZING
/// Built without libFuzzer (the normal `swift build`), this replays the files named on the command line, so a
/// crash input can be re-run under a debugger. `fuzz/run` defines LOGBROKER_FUZZING: with `-sanitize=fuzzer`
/// libFuzzer brings its own `main`, and SwiftPM then compiles the target as a library, so a second one would clash.
@main
enum ReplayFiles {
    static func main() {
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("cannot read \(path)\n".utf8))
                exit(66)
            }
            data.withUnsafeBytes { RequestFuzzer.run($0) }
            print("\(path): ok")
        }
    }
}
#endif
