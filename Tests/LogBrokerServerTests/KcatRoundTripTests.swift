import Foundation
import Testing

/// Debian's kcat (librdkafka 2.0.2) against the real `logbroker-server` binary: what a user does first. 100,000
/// lines produced with each codec come back byte-identical, keys and headers round-trip, `-L` lists the cluster
/// and `-Q` finds offsets by timestamp. (Surviving SIGTERM and SIGKILL is `RestartTests`.)
@Suite(.serialized) struct KcatRoundTripTests {
    /// Runs a shell pipeline (for kcat's stdin and stdout) and returns its status and combined output.
    static func shell(_ command: String) async throws -> (status: Int32, output: String) {
        try await ExternalClientTests.run(["sh", "-c", command])
    }

    /// `count` distinct lines with some repetition, so every codec has work to do, newline-terminated.
    static func lines(_ count: Int, prefix: String = "line") -> String {
        (0..<count).map { "\(prefix) \($0) " + String(repeating: "payload-\($0 % 97) ", count: 3) + "\n" }.joined()
    }

    /// The codec id (attributes & 7) of every whole batch in a `.log` file.
    static func codecIDs(ofBatchesIn log: Data) -> [Int] {
        let bytes = [UInt8](log)
        var ids: [Int] = []
        var position = 0
        while position + 61 <= bytes.count {
            let length = bytes[(position + 8)..<(position + 12)].reduce(0) { $0 << 8 | Int($1) }
            ids.append(Int(bytes[position + 22] & 0x07))
            position += 12 + length
        }
        return ids
    }

    @Test(.timeLimit(.minutes(5)))
    func hundredThousandLinesRoundTripWithEveryCodec() async throws {
        try await BrokerProcess.withBroker { broker in
            let input = broker.directory.appendingPathComponent("lines.txt")
            let expected = Self.lines(100_000)
            try expected.write(to: input, atomically: true, encoding: .utf8)

            let codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
            for codec in codecs {
                let topic = "rt-\(codec)"
                let produce = try await Self.shell(
                    "kcat -b \(broker.bootstrap) -P -t \(topic) -z \(codec) -X linger.ms=5 < \(input.path)"
                )
                #expect(produce.status == 0, "kcat -P -z \(codec): \(produce.output)")
                // -e stops at the end; -q keeps kcat's own messages out; output goes to a file, not a pipe, so a
                // mismatch can be reported by size without holding two copies in the test's output.
                let output = broker.directory.appendingPathComponent("\(topic).out")
                let consume = try await Self.shell(
                    "kcat -b \(broker.bootstrap) -C -t \(topic) -e -q > \(output.path)"
                )
                #expect(consume.status == 0, "kcat -C \(topic): \(consume.output)")
                let back = try String(contentsOf: output, encoding: .utf8)
                #expect(back == expected, "-z \(codec): \(back.utf8.count) of \(expected.utf8.count) bytes back")
                // kcat drops a codec silently when the broker's versions disable it, so look at the stored batches.
                // librdkafka also sends a batch uncompressed when compressing does not shrink it (a tiny first
                // batch), so the codec must appear, not be on every batch.
                let segment = broker.logDirectory.appendingPathComponent("\(topic)-0/00000000000000000000.log")
                let stored = Self.codecIDs(ofBatchesIn: try Data(contentsOf: segment))
                #expect(stored.contains(codecs.firstIndex(of: codec)!), "-z \(codec): codec ids \(Set(stored))")
            }
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func keysAndHeadersRoundTrip() async throws {
        try await BrokerProcess.withBroker { broker in
            let keyed = try await Self.shell(
                "printf 'k1:v1\\nk2:v2\\n:no key\\nk4:\\n' | "
                    + "kcat -b \(broker.bootstrap) -P -t keyed -K: -H source=test -H n=1 -H empty="
            )
            #expect(keyed.status == 0, "\(keyed.output)")
            let plain = try await Self.shell("printf 'no key at all\\n' | kcat -b \(broker.bootstrap) -P -t keyed")
            #expect(plain.status == 0, "\(plain.output)")
            // %k key, %s value, %h headers, %K / %S their lengths (-1 for null).
            let back = try await Self.shell(
                "kcat -b \(broker.bootstrap) -C -t keyed -e -q -f '%k=%s %K %S %h\\n'"
            )
            #expect(back.status == 0, "\(back.output)")
            // kcat -K sends an empty key for ":no key" and an empty value for "k4:"; without -K the key is null
            // (length -1) and there are no headers.
            #expect(
                back.output
                    == [
                        "k1=v1 2 2 source=test,n=1,empty=",
                        "k2=v2 2 2 source=test,n=1,empty=",
                        "=no key 0 6 source=test,n=1,empty=",
                        "k4= 2 0 source=test,n=1,empty=",
                        "=no key at all -1 13 ",
                    ].map { $0 + "\n" }.joined()
            )
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func listShowsTheBrokerTopicsAndPartitions() async throws {
        try await BrokerProcess.withBroker([("num.partitions", "3")]) { broker in
            let produce = try await Self.shell("printf 'a\\nb\\n' | kcat -b \(broker.bootstrap) -P -t listed")
            #expect(produce.status == 0, "\(produce.output)")
            let list = try await Self.shell("kcat -b \(broker.bootstrap) -L")
            #expect(list.status == 0, "\(list.output)")
            #expect(list.output.contains("broker 1 at \(broker.bootstrap) (controller)"), "\(list.output)")
            #expect(list.output.contains("topic \"listed\" with 3 partitions:"), "\(list.output)")
            for partition in 0..<3 {
                #expect(
                    list.output.contains("partition \(partition), leader 1, replicas: 1, isrs: 1"),
                    "\(list.output)"
                )
            }
            // One topic asked for by name: only it (auto-created on the way, as Kafka does by default).
            let one = try await Self.shell("kcat -b \(broker.bootstrap) -L -t fresh")
            #expect(one.status == 0, "\(one.output)")
            #expect(one.output.contains(" 1 topics:\n  topic \"fresh\" with 3 partitions:"), "\(one.output)")
            #expect(!one.output.contains("\"listed\""), "\(one.output)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func queryFindsTheOffsetForATimestamp() async throws {
        try await BrokerProcess.withBroker { broker in
            let first = try await Self.shell(
                "seq 1 1000 | kcat -b \(broker.bootstrap) -P -t stamped -X linger.ms=5"
            )
            #expect(first.status == 0, "\(first.output)")
            // librdkafka stamps each record with the wall clock when it is produced (CreateTime), so a moment
            // strictly between the two runs separates them.
            try await Task.sleep(for: .milliseconds(20))
            let between = Int64(Date().timeIntervalSince1970 * 1000)
            try await Task.sleep(for: .milliseconds(20))
            let second = try await Self.shell(
                "seq 1001 1500 | kcat -b \(broker.bootstrap) -P -t stamped -X linger.ms=5"
            )
            #expect(second.status == 0, "\(second.output)")

            let cases: [(timestamp: Int64, offset: Int64)] = [
                (between, 1000),  // the first record of the second run
                (1, 0),  // before everything: the first offset
                (between + 3_600_000, -1),  // after everything: none (Kafka answers offset -1)
                (-1, 1500),  // kcat passes the special timestamps through: latest
                (-2, 0),  // earliest
            ]
            for (timestamp, offset) in cases {
                let query = try await Self.shell("kcat -b \(broker.bootstrap) -Q -t stamped:0:\(timestamp)")
                #expect(query.status == 0, "\(query.output)")
                #expect(query.output == "stamped [0] offset \(offset)\n", "-Q at \(timestamp)")
            }
            // And the record at the answered offset is the first of the second run.
            let record = try await Self.shell("kcat -b \(broker.bootstrap) -C -t stamped -o 1000 -c 1 -e -q")
            #expect(record.output == "1001\n")
        }
    }
}
