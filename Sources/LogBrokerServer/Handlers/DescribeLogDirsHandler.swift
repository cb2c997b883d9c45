import KafkaMessages
import KafkaWire
import LogStorage
import SystemPackage

/// DescribeLogDirs (key 35), v0–4: each log directory with the partitions it holds (all, or the requested ones
/// this broker has) and their sizes in bytes (the segments' `.log` files), and from v4 the file system's total and
/// usable bytes. No replica moves between directories yet, so the offset lag is 0 and no partition is a future
/// replica.
///
/// A `Sendable` value shared by every connection; thread-safe.
public struct DescribeLogDirsHandler: KafkaHandler {
    public typealias Request = DescribeLogDirsRequest

    public var versions: ClosedRange<Int16> { 0...4 }

    let logManager: LogManager

    public init(logManager: LogManager) {
        self.logManager = logManager
    }

    public func handle(_ request: DescribeLogDirsRequest, context: RequestContext) async -> DescribeLogDirsResponse {
        let wanted = request.topics.map { topics in
            Set(topics.flatMap { topic in topic.partitions.map { TopicPartition(topic.topic, $0) } })
        }
        let logs = self.logManager.allLogs.filter { wanted?.contains($0.topicPartition) ?? true }
        let results = self.logManager.config.logDirectories.map { directory in
            let byTopic = Dictionary(grouping: logs.filter { $0.logDirectory == directory }) {
                $0.topicPartition.topic
            }
            let space = self.logManager.diskSpace(of: directory)
            return DescribeLogDirsResponse.DescribeLogDirsResult(
                errorCode: 0,
                logDir: directory.string,
                topics: byTopic.keys.sorted().map { topic in
                    .init(
                        name: topic,
                        partitions: (byTopic[topic] ?? []).sorted { $0.topicPartition.partition < $1.topicPartition.partition }
                            .map { .init(partitionIndex: $0.topicPartition.partition, partitionSize: $0.sizeInBytes) }
                    )
                },
                totalBytes: space?.total ?? -1,
                usableBytes: space?.usable ?? -1
            )
        }
        return DescribeLogDirsResponse(results: results)
    }
}
