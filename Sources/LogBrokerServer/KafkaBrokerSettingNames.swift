/// Names of Apache Kafka broker settings (Kafka 3.x and 4.x `KafkaConfig` and the configs it includes: server,
/// log, replication, group and share coordinators, transactions, quotas, KRaft, SASL/SSL, metrics, remote storage),
/// so that `server.properties` pasted from a Kafka installation starts with a warning per setting LogBroker does not
/// implement, instead of stopping as a typo would. Settings LogBroker implements are in `BrokerConfiguration.table`;
/// a name in both is simply implemented.
///
/// Immutable; thread-safe.
enum KafkaBrokerSettingNames {
    /// Prefixes of families of per-listener or per-plugin settings (`listener.name.<name>.ssl.keystore.location`).
    static let prefixes: [String] = [
        "listener.name.", "config.providers.", "remote.log.storage.manager.impl.", "remote.log.metadata.manager.impl.",
        "metric.reporters.", "ssl.", "sasl.", "zookeeper.", "client.quota.callback.", "group.coordinator.",
        "share.coordinator.",
    ]

    /// Whether `key` is a Kafka broker setting.
    static func contains(_ key: String) -> Bool {
        Self.names.contains(key) || Self.prefixes.contains { key.hasPrefix($0) }
    }

    static let names: Set<String> = [
        // Server basics, listeners and sockets.
        "advertised.listeners", "broker.id", "broker.id.generation.enable", "broker.rack",
        "control.plane.listener.name",
        "controller.listener.names", "early.start.listeners", "inter.broker.listener.name",
        "inter.broker.protocol.version", "listener.security.protocol.map", "listeners", "node.id", "process.roles",
        "reserved.broker.max.id", "security.inter.broker.protocol", "background.threads", "num.io.threads",
        "num.network.threads", "num.recovery.threads.per.data.dir", "num.replica.alter.log.dirs.threads",
        "num.replica.fetchers", "queued.max.requests", "queued.max.request.bytes", "request.timeout.ms",
        "socket.connection.setup.timeout.ms", "socket.connection.setup.timeout.max.ms", "socket.listen.backlog.size",
        "socket.receive.buffer.bytes", "socket.request.max.bytes", "socket.send.buffer.bytes",
        "connections.max.idle.ms", "connections.max.reauth.ms", "connection.failed.authentication.delay.ms",
        "max.connections", "max.connections.per.ip", "max.connections.per.ip.overrides", "max.connection.creation.rate",
        "message.max.bytes", "metadata.max.idle.interval.ms", "metadata.max.retention.bytes",
        "metadata.max.retention.ms", "metadata.log.dir", "metadata.log.max.record.bytes.between.snapshots",
        "metadata.log.max.snapshot.interval.ms", "metadata.log.segment.bytes", "metadata.log.segment.ms",
        "metadata.log.segment.min.bytes", "fetch.max.bytes", "fetch.purgatory.purge.interval.requests",
        "producer.purgatory.purge.interval.requests", "delete.records.purgatory.purge.interval.requests",
        "delete.topic.enable", "auto.create.topics.enable", "auto.leader.rebalance.enable",
        "leader.imbalance.check.interval.seconds", "leader.imbalance.per.broker.percentage",
        "unclean.leader.election.enable", "unclean.leader.election.interval.ms", "min.insync.replicas",
        "num.partitions", "default.replication.factor", "compression.type", "compression.gzip.level",
        "compression.lz4.level", "compression.zstd.level", "create.topic.policy.class.name",
        "alter.config.policy.class.name", "alter.log.dirs.replication.quota.window.num",
        "alter.log.dirs.replication.quota.window.size.seconds", "authorizer.class.name", "super.users",
        "allow.everyone.if.no.acl.found", "principal.builder.class", "kafka.metrics.polling.interval.secs",
        "kafka.metrics.reporters", "metric.reporters", "metrics.num.samples", "metrics.recording.level",
        "metrics.sample.window.ms", "auto.include.jmx.reporter", "telemetry.max.bytes", "client.telemetry.max.bytes",
        "password.encoder.secret", "password.encoder.old.secret", "password.encoder.keyfactory.algorithm",
        "password.encoder.cipher.algorithm", "password.encoder.key.length", "password.encoder.iterations",
        "config.providers", "broker.heartbeat.interval.ms", "broker.session.timeout.ms",
        "initial.broker.registration.timeout.ms", "server.max.startup.time.ms", "eligible.leader.replicas.enable",
        "unstable.api.versions.enable", "unstable.feature.versions.enable", "unstable.metadata.versions.enable",
        "controlled.shutdown.enable", "controlled.shutdown.max.retries", "controlled.shutdown.retry.backoff.ms",
        "controller.quorum.voters", "controller.quorum.bootstrap.servers", "controller.quorum.election.timeout.ms",
        "controller.quorum.election.backoff.max.ms", "controller.quorum.fetch.timeout.ms",
        "controller.quorum.append.linger.ms", "controller.quorum.request.timeout.ms",
        "controller.quorum.retry.backoff.ms", "controller.quorum.auto.join.enable",
        "controller.performance.sample.period.ms", "controller.performance.always.log.threshold.ms",
        "controller.quota.window.num", "controller.quota.window.size.seconds", "controller.socket.timeout.ms",
        "zookeeper.connect", "zookeeper.session.timeout.ms", "zookeeper.connection.timeout.ms",
        "zookeeper.set.acl", "zookeeper.metadata.migration.enable",
        // Logs.
        "log.dir", "log.dirs", "log.segment.bytes", "log.roll.ms", "log.roll.hours", "log.roll.jitter.ms",
        "log.roll.jitter.hours", "log.retention.ms", "log.retention.minutes", "log.retention.hours",
        "log.retention.bytes", "log.retention.check.interval.ms", "log.cleanup.policy", "log.cleaner.enable",
        "log.cleaner.threads", "log.cleaner.io.max.bytes.per.second", "log.cleaner.dedupe.buffer.size",
        "log.cleaner.io.buffer.size", "log.cleaner.io.buffer.load.factor", "log.cleaner.backoff.ms",
        "log.cleaner.min.cleanable.ratio", "log.cleaner.delete.retention.ms", "log.cleaner.min.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms", "log.index.size.max.bytes", "log.index.interval.bytes",
        "log.flush.interval.messages", "log.flush.interval.ms", "log.flush.scheduler.interval.ms",
        "log.flush.offset.checkpoint.interval.ms", "log.flush.start.offset.checkpoint.interval.ms",
        "log.segment.delete.delay.ms", "log.preallocate", "log.message.format.version",
        "log.message.timestamp.type", "log.message.timestamp.difference.max.ms",
        "log.message.timestamp.before.max.ms", "log.message.timestamp.after.max.ms",
        "log.message.downconversion.enable", "log.dir.failure.timeout.ms", "log.initial.task.delay.ms",
        "log.local.retention.ms", "log.local.retention.bytes", "num.recovery.threads.per.data.dir",
        "log.cleaner.dedupe.buffer.load.factor",
        // Replication.
        "replica.lag.time.max.ms", "replica.socket.timeout.ms", "replica.socket.receive.buffer.bytes",
        "replica.fetch.max.bytes", "replica.fetch.min.bytes", "replica.fetch.wait.max.ms",
        "replica.fetch.backoff.ms", "replica.fetch.response.max.bytes", "replica.high.watermark.checkpoint.interval.ms",
        "replica.selector.class", "replication.quota.window.num", "replication.quota.window.size.seconds",
        "leader.replication.throttled.replicas", "follower.replication.throttled.replicas",
        "leader.replication.throttled.rate", "follower.replication.throttled.rate",
        "replica.alter.log.dirs.io.max.bytes.per.second",
        // Groups and offsets.
        "group.min.session.timeout.ms", "group.max.session.timeout.ms", "group.initial.rebalance.delay.ms",
        "group.max.size", "group.coordinator.rebalance.protocols", "group.coordinator.new.enable",
        "group.coordinator.threads", "group.coordinator.append.linger.ms", "group.consumer.session.timeout.ms",
        "group.consumer.min.session.timeout.ms", "group.consumer.max.session.timeout.ms",
        "group.consumer.heartbeat.interval.ms", "group.consumer.min.heartbeat.interval.ms",
        "group.consumer.max.heartbeat.interval.ms", "group.consumer.max.size", "group.consumer.assignors",
        "group.consumer.migration.policy", "group.share.enable", "group.share.max.groups",
        "group.share.max.size", "group.share.record.lock.duration.ms", "group.share.delivery.count.limit",
        "group.share.session.timeout.ms", "group.share.heartbeat.interval.ms", "group.share.partition.max.record.locks",
        "offsets.topic.replication.factor", "offsets.topic.num.partitions", "offsets.topic.segment.bytes",
        "offsets.topic.compression.codec", "offsets.load.buffer.size", "offsets.commit.timeout.ms",
        "offsets.commit.required.acks", "offsets.retention.minutes", "offsets.retention.check.interval.ms",
        "offset.metadata.max.bytes", "max.incremental.fetch.session.cache.slots", "consumer.group.migration.policy",
        "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.num.partitions",
        // Transactions and producer ids.
        "transactional.id.expiration.ms", "transaction.max.timeout.ms", "transaction.state.log.replication.factor",
        "transaction.state.log.num.partitions", "transaction.state.log.segment.bytes",
        "transaction.state.log.min.isr", "transaction.state.log.load.buffer.size",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "transaction.remove.expired.transaction.cleanup.interval.ms", "transaction.partition.verification.enable",
        "transaction.two.phase.commit.enable", "producer.id.expiration.ms", "producer.id.expiration.check.interval.ms",
        "max.incremental.fetch.session.cache.slots",
        // Quotas.
        "quota.window.num", "quota.window.size.seconds", "client.quota.callback.class",
        // Security.
        "security.providers", "sasl.enabled.mechanisms", "sasl.mechanism.inter.broker.protocol",
        "sasl.mechanism.controller.protocol", "sasl.jaas.config", "sasl.kerberos.service.name",
        "sasl.server.callback.handler.class", "ssl.keystore.location", "ssl.keystore.password", "ssl.key.password",
        "ssl.truststore.location", "ssl.truststore.password", "ssl.client.auth", "ssl.protocol",
        "ssl.enabled.protocols", "ssl.cipher.suites", "ssl.endpoint.identification.algorithm",
        "ssl.principal.mapping.rules", "delegation.token.master.key", "delegation.token.secret.key",
        "delegation.token.max.lifetime.ms", "delegation.token.expiry.time.ms",
        "delegation.token.expiry.check.interval.ms",
        // Remote (tiered) storage.
        "remote.log.storage.system.enable", "remote.log.manager.thread.pool.size",
        "remote.log.manager.task.interval.ms", "remote.log.storage.manager.class.name",
        "remote.log.storage.manager.class.path", "remote.log.metadata.manager.class.name",
        "remote.log.metadata.manager.class.path", "remote.log.metadata.manager.listener.name",
        "remote.log.reader.threads", "remote.log.reader.max.pending.tasks",
        "remote.log.index.file.cache.total.size.bytes",
        "remote.fetch.max.wait.ms", "remote.log.manager.copy.max.bytes.per.second",
        "remote.log.manager.fetch.max.bytes.per.second",
    ]
}
