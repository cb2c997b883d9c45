import Foundation
import KafkaMessages
import KafkaNIO
import KafkaRecords
import KafkaWire
import LogStorage
import NIOCore
import NIOPosix
import Replication
import SystemPackage
import Testing

@testable import LogBrokerServer

/// Fetch responses whose records go out as file regions (sendfile).
@Suite struct ZeroCopyTests {
    static func context(version: Int16, correlationID: Int32) -> RequestContext {
        RequestContext(
            apiVersion: version,
            correlationID: correlationID,
            clientID: "zero-copy",
            remoteAddress: nil,
            listenerName: "PLAINTEXT",
            advertisedAPIs: [],
            logger: CapturedLog().logger()
        )
    }

    /// The bytes `parts` put on the wire, file regions read with pread; closes the regions' descriptors.
    static func wireBytes(_ parts: [IOData]) throws -> [UInt8] {
        var bytes: [UInt8] = []
        for part in parts {
            switch part {
            case .byteBuffer(let buffer):
                bytes += buffer.readableBytesView
            case .fileRegion(let region):
                var chunk = [UInt8](repeating: 0, count: region.readableBytes)
                let read = try region.fileHandle.withUnsafeFileDescriptor { descriptor in
                    chunk.withUnsafeMutableBytes {
                        pread(descriptor, $0.baseAddress, $0.count, off_t(region.readerIndex))
                    }
                }
                try region.fileHandle.close()
                #expect(read == chunk.count)
                bytes += chunk
            }
        }
        return bytes
    }

    /// The hand-laid parts equal the generated encoding (records read into memory) byte for byte at every version:
    /// two topics, partitions with records, an empty partition, an unknown partition, aborted transactions null
    /// and empty.
    @Test func partsEqualTheGeneratedEncodingAtEveryVersion() async throws {
        try await ProduceFetchTests.withBroker { _, replicas in
            try await replicas.becomeLeader(topic: "second", partition: 0, topicID: .zero, leaderEpoch: 1)
            try await replicas.becomeLeader(
                topic: ProduceFetchTests.topic,
                partition: 1,
                topicID: .zero,
                leaderEpoch: 1
            )
            for index in 0..<5 {
                let values = (0..<(index + 1) * 20).map { "value \(index) \($0) " + String(repeating: "x", count: 50) }
                let batch = try ProduceFetchTests.batch(values)
                _ = await replicas.append(topic: ProduceFetchTests.topic, partition: 0, records: batch, requiredAcks: 1)
                _ = await replicas.append(topic: "second", partition: 0, records: batch, requiredAcks: 1)
            }
            let handler = FetchHandler(replicas: replicas, sessions: FetchSessionCache(capacity: 10))
            for version in Int16(4)...12 {
                let request = FetchRequest(
                    maxWaitMs: 0,
                    minBytes: 1,
                    maxBytes: 50 << 20,
                    isolationLevel: Int8(version % 2),
                    topics: [
                        .init(
                            topic: ProduceFetchTests.topic,
                            partitions: [
                                .init(partition: 0, fetchOffset: 20, partitionMaxBytes: 1 << 20),
                                .init(partition: 1, fetchOffset: 0, partitionMaxBytes: 1 << 20),
                                .init(partition: 7, fetchOffset: 0, partitionMaxBytes: 1 << 20),
                            ]
                        ),
                        .init(
                            topic: "second",
                            partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 5000)]
                        ),
                    ]
                )
                let context = Self.context(version: version, correlationID: Int32(version) * 1000)
                let generated = KafkaFrame.response(
                    await handler.handle(request, context: context),
                    version: version,
                    correlationID: context.correlationID
                )
                guard case .responseParts(let parts) = await handler.respond(to: request, context: context) else {
                    Issue.record("v\(version): no parts")
                    continue
                }
                let regions = parts.filter { if case .fileRegion = $0 { true } else { false } }
                #expect(regions.count == 2, "v\(version): one region per partition with records")
                #expect(try Self.wireBytes(parts) == Array(generated.readableBytesView), "v\(version)")
                let decoded = try KafkaFrame.decodeResponse(generated, to: FetchRequest.self, version: version).1
                #expect(decoded.responses.map(\.partitions.count) == [3, 1])
                #expect(try ProduceFetchTests.decode(decoded.responses[0].partitions[0].records).values.count == 280)
            }
        }
    }

    /// Bytes returned by each traced system call in an strace output file (`name(...) = N` lines).
    static func bytesBySyscall(_ trace: String) -> [String: Int] {
        var totals: [String: Int] = [:]
        for line in trace.split(separator: "\n") {
            guard let match = line.firstMatch(of: /(sendfile|writev|write)\(.*\)\s+=\s+(\d+)/) else { continue }
            totals[String(match.1), default: 0] += Int(match.2)!
        }
        return totals
    }

    /// The real binary under strace while kcat consumes 200 MiB: sendfile moves the records, write/writev only
    /// the headers.
    @Test(.timeLimit(.minutes(5)))
    func sendfileMovesTheRecordsToKcat() async throws {
        try await BrokerProcess.withBroker { broker in
            let input = broker.directory.appendingPathComponent("lines.txt")
            let line = String(repeating: "0123456789abcdef", count: 64) + "\n"
            let count = 200_000
            try String(repeating: line, count: count).write(to: input, atomically: true, encoding: .utf8)
            let produce = try await KcatRoundTripTests.shell(
                "kcat -b \(broker.bootstrap) -P -t big -X linger.ms=20 -X batch.size=1000000 < \(input.path)"
            )
            #expect(produce.status == 0, "\(produce.output)")
            try FileManager.default.removeItem(at: input)

            let pid = try requireNonNilValue(broker.processIdentifier)
            // One file per thread (-ff): in a shared file a call that another thread's call interrupts is split into
            // "<unfinished ...>" and "<... sendfile resumed>" lines, and its byte count would be missed.
            let trace = broker.directory.appendingPathComponent("strace")
            let output = broker.directory.appendingPathComponent("consumed.txt")
            // strace attaches to every thread of the running broker. It does not detach on a signal while the
            // broker idles (seen: SIGINT and SIGTERM both blocked), so the broker is stopped (SIGTERM, a graceful
            // shutdown) and strace ends with it. kcat starts once strace reported every thread attached: a fixed
            // 2 s wait was too short on a loaded machine, and the first sendfile calls went untraced.
            let attached = broker.directory.appendingPathComponent("strace-attached.txt")
            let consume = try await KcatRoundTripTests.shell(
                "strace -ff -e trace=sendfile,write,writev -o \(trace.path) -p \(pid) 2> \(attached.path) & tracer=$!; "
                    + "for _ in $(seq 300); do "
                    + "[ \"$(grep -c attached \(attached.path))\" -ge \"$(ls /proc/\(pid)/task | wc -l)\" ] && break; "
                    + "sleep 0.1; done; "
                    + "kcat -b \(broker.bootstrap) -C -t big -e -q -c \(count) > \(output.path); status=$?; "
                    + "kill -TERM \(pid); wait $tracer; exit $status"
            )
            #expect(consume.status == 0, "\(consume.output)")
            let consumed = try FileManager.default.attributesOfItem(atPath: output.path)[.size] as? Int ?? 0
            #expect(consumed == line.utf8.count * count)
            let perThread = try FileManager.default.contentsOfDirectory(atPath: broker.directory.path)
                .filter { $0.hasPrefix("strace.") }
                .map { try String(contentsOf: broker.directory.appendingPathComponent($0), encoding: .utf8) }
            #expect(!perThread.isEmpty, "strace wrote no trace")
            let totals = Self.bytesBySyscall(perThread.joined(separator: "\n"))
            let sent = totals["sendfile", default: 0]
            let written = totals["write", default: 0] + totals["writev", default: 0]
            print("strace during the consume: sendfile \(sent) bytes, write/writev \(written) bytes")
            #expect(sent >= consumed, "sendfile moved \(sent) bytes for \(consumed) consumed")
            #expect(written * 100 < sent, "write/writev moved \(written) bytes, sendfile \(sent)")
        }
    }

    /// The segment file cut to nothing while a 40 MB fetch is being sent to a reader that does not read: the
    /// transfer cannot finish (sendfile would return 0 forever), so that connection is closed, and the broker keeps
    /// answering others.
    @Test(.timeLimit(.minutes(2)))
    func truncatingTheSegmentUnderATransferClosesThatConnection() async throws {
        try await ProduceFetchTests.withBroker { port, replicas in
            // 50 batches of 100 x 8,000 B (under message.max.bytes).
            let values = (0..<100).map { "\($0) " + String(repeating: "t", count: 8_000) }
            for _ in 0..<50 {
                let appended = await replicas.append(
                    topic: ProduceFetchTests.topic,
                    partition: 0,
                    records: try ProduceFetchTests.batch(values),
                    requiredAcks: 1
                )
                #expect(appended.error == .none)
            }
            let read = await replicas.read(
                [
                    PartitionRead(
                        topicPartition: TopicPartition(ProduceFetchTests.topic, 0),
                        fetchOffset: 0,
                        maxBytes: 1
                    )
                ],
                maxBytes: 1
            )
            let segment = try #require(read.first?.range?.file.path).string

            let frame = sizedRequestFrame(
                ProduceFetchTests.fetchRequest(offset: 0, partitionMaxBytes: 50 << 20),
                version: 12,
                clientID: "slow"
            )
            // A reader that reads nothing until told: the response stalls once the socket buffers are full.
            let slow = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.autoRead, value: false)
                .channelOption(.socketOption(.so_rcvbuf), value: 4096)
                .connect(host: "127.0.0.1", port: port).get()
            try await slow.writeAndFlush(frame).get()
            try await Task.sleep(for: .milliseconds(500))
            #expect(truncate(segment, 0) == 0)
            // Drain from now on, so the broker's sendfile reaches the cut end.
            try await slow.setOption(.autoRead, value: true).get()
            slow.read()

            let clock = ContinuousClock()
            let start = clock.now
            let closed = try await ParkedFetchTests.eventually(within: .seconds(5)) { !slow.isActive }
            #expect(closed, "the connection still open 5 s after the segment was cut")
            print("connection closed \(clock.now - start) after the segment was cut")
            slow.close(promise: nil)

            try await KafkaClientConnection.withConnection(host: "127.0.0.1", port: port) { connection in
                let versions = try await connection.send(ApiVersionsRequest(), version: 0)
                #expect(versions.errorCode == 0)
            }
        }
    }
}
