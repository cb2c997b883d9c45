// logbroker-microbench: throughput of the byte-moving hot paths in KafkaRecords, printed as one table.
//
// Each figure is the best of several timed repetitions, each repeating the operation for at least `minimumTime`,
// so a noisy neighbour on a shared machine lowers the median but rarely the best. Inputs are ~1 MB of 100-byte
// records with log-like, partly compressible content. Build with `-c release` (benchmarks/micro.sh does).

import Foundation
import KafkaRecords
import NIOCore

let minimumTime = 0.2
let repetitions = 5
let recordSize = 100
let recordsPerBatch = 10_000  // ~1 MB of values

/// Partly compressible bytes: log-like words and hex numbers from a fixed pseudo-random sequence.
func sampleBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var result: [UInt8] = []
    result.reserveCapacity(count + 64)
    let words = ["GET", "/api/v1/items", "user=", "status=200", "latency_ms=", "INFO", "host=web-", "POST"]
    while result.count < count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        result += Array(words[Int(state >> 61)].utf8)
        result += Array(String(state >> 36, radix: 16).utf8)
        result.append(0x20)
    }
    return Array(result.prefix(count))
}

/// Seconds per operation: best over `repetitions` runs, each running `body` until `minimumTime` has passed.
func bestSecondsPerOperation(_ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<repetitions {
        var operations = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed = 0.0
        repeat {
            try body()
            operations += 1
            elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } while elapsed < minimumTime
        best = min(best, elapsed / Double(operations))
    }
    return best
}

struct Row {
    var name: String
    var bytes: Int
    var seconds: Double
    var note: String

    var megabytesPerSecond: Double { Double(self.bytes) / self.seconds / 1e6 }
}

var rows: [Row] = []
@MainActor
func measure(_ name: String, bytes: Int, note: String = "", _ body: () throws -> Void) rethrows {
    let seconds = try bestSecondsPerOperation(body)
    rows.append(Row(name: name, bytes: bytes, seconds: seconds, note: note))
    FileHandle.standardError.write(
        Data("  \(name): \(String(format: "%.0f", rows.last!.megabytesPerSecond)) MB/s\n".utf8)
    )
}

/// A sink the optimiser cannot see through.
@inline(never)
func blackHole<T>(_ value: T) {}

// MARK: Inputs

let values = (0..<recordsPerBatch).map { ByteBuffer(bytes: sampleBytes(recordSize, seed: UInt64($0) &+ 1)) }
let keys = (0..<recordsPerBatch).map { ByteBuffer(string: "user-\($0 % 1000)") }
let context = CompressionContext()

@MainActor
func makeBuilder(_ codec: CompressionCodec) -> RecordBatchBuilder {
    var builder = RecordBatchBuilder(codec: codec, producerID: 1, producerEpoch: 0, baseSequence: 0)
    for index in 0..<recordsPerBatch {
        builder.append(timestamp: 1_700_000_000_000 + Int64(index), key: keys[index], value: values[index])
    }
    return builder
}

let uncompressedBuilder = makeBuilder(.none)
let uncompressedSize = uncompressedBuilder.uncompressedRecordsSize
let uncompressedRecords = try uncompressedBuilder.build().recordsArea
let crcInput = [UInt8](uncompressedRecords.readableBytesView)

// MARK: CRC-32C

crcInput.withUnsafeBytes { bytes in
    measure(
        "CRC-32C hardware (SSE4.2, 3 streams)",
        bytes: bytes.count,
        note: "available: \(CRC32C.isHardwareAccelerated)"
    ) {
        blackHole(CRC32C.extendHardware(0, bytes))
    }
    measure("CRC-32C portable (slicing-by-8)", bytes: bytes.count) {
        blackHole(CRC32C.extendPortable(0, bytes))
    }
}

// MARK: Build, validate, codecs

for codec in CompressionCodec.allCases {
    let builder = makeBuilder(codec)
    let batch = try builder.build(compression: context)
    let ratio = Double(uncompressedSize) / Double(batch.recordsArea.readableBytes)
    let note = codec == .none ? "" : String(format: "ratio %.2f", ratio)

    var appending = RecordBatchBuilder(codec: codec)
    try measure("build batch, \(codec) (append + compress + CRC)", bytes: uncompressedSize, note: note) {
        appending.reset()
        for index in 0..<recordsPerBatch {
            appending.append(timestamp: 1_700_000_000_000 + Int64(index), key: keys[index], value: values[index])
        }
        blackHole(try appending.build(compression: context))
    }

    var validator = RecordBatchValidator(options: .init(maxDecompressedBytes: 16 << 20))
    try measure("validate batch, \(codec) (CRC + decompress + walk)", bytes: uncompressedSize, note: note) {
        blackHole(try validator.validate(batch))
    }

    guard codec != .none else { continue }
    var compressed = ByteBuffer()
    var decompressed = ByteBuffer()
    try uncompressedRecords.withUnsafeReadableBytes { input in
        try measure("compress \(codec)", bytes: uncompressedSize, note: note) {
            compressed.clear()
            try context.compress(input, codec: codec, appendingTo: &compressed)
        }
    }
    try compressed.withUnsafeReadableBytes { input in
        try measure("decompress \(codec)", bytes: uncompressedSize, note: note) {
            decompressed.clear()
            try context.decompress(input, codec: codec, maxDecompressedBytes: 16 << 20, appendingTo: &decompressed)
        }
    }
}

// MARK: Table

let nameWidth = rows.map(\.name.count).max()! + 2
print(
    "KafkaRecords micro-benchmarks: \(recordsPerBatch) records of \(recordSize)-byte values "
        + "(\(uncompressedSize) bytes uncompressed), best of \(repetitions) x >= \(minimumTime) s"
)
print("operation".padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "      MB/s   us/op  note")
for row in rows {
    let name = row.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
    let rate = String(format: "%10.0f", row.megabytesPerSecond)
    let micros = String(format: "%8.0f", row.seconds * 1e6)
    print("\(name)\(rate)\(micros)  \(row.note)")
}
