"""A fake single-node Kafka broker that records every request frame it receives.

It listens on 127.0.0.1 (a free port), keeps the bytes of each request frame
(request header + body, i.e. everything after the 4-byte size prefix), and
answers just enough for real clients to produce and to look up offsets:
ApiVersions, Metadata, Produce, InitProducerId, ListOffsets, FindCoordinator
and DescribeCluster. Responses are encoded with kafka-python's own protocol
classes. Any other request (or a version outside the advertised range) closes
the connection, as Kafka does.

The ApiVersions table is the "adv." column of the project's client-protocol
notes (CLIENTS.md section 2); see README.md next to this file for why each
range matters.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import uuid

import kafka.protocol.admin  # noqa: F401  (registers the message classes)
import kafka.protocol.consumer  # noqa: F401
import kafka.protocol.metadata  # noqa: F401
import kafka.protocol.producer  # noqa: F401
from kafka.protocol.api_key import ApiKey
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.api_header import ResponseClassRegistry
from kafka.record.memory_records import MemoryRecords

# (api key, min, max): CLIENTS.md section 2, "adv." column, milestone-1 APIs.
# Not advertised: transactions, ACLs, KIP-848 (68/69), telemetry (71/72),
# DescribeTopicPartitions (75), broker-internal keys.
ADVERTISED = [
    (ApiKey.Produce, 0, 11),
    (ApiKey.Fetch, 4, 12),
    (ApiKey.ListOffsets, 1, 7),
    (ApiKey.Metadata, 0, 12),
    (ApiKey.OffsetCommit, 2, 9),
    (ApiKey.OffsetFetch, 1, 9),
    (ApiKey.FindCoordinator, 0, 4),
    (ApiKey.JoinGroup, 0, 9),
    (ApiKey.Heartbeat, 0, 4),
    (ApiKey.LeaveGroup, 0, 5),
    (ApiKey.SyncGroup, 0, 5),
    (ApiKey.DescribeGroups, 0, 5),
    (ApiKey.ListGroups, 0, 5),
    (ApiKey.SaslHandshake, 0, 1),
    (ApiKey.ApiVersions, 0, 4),
    (ApiKey.CreateTopics, 0, 7),
    (ApiKey.DeleteTopics, 0, 6),
    (ApiKey.DeleteRecords, 0, 2),
    (ApiKey.InitProducerId, 0, 4),
    (ApiKey.OffsetForLeaderEpoch, 2, 4),
    (ApiKey.DescribeConfigs, 0, 4),
    (ApiKey.AlterConfigs, 0, 2),
    (ApiKey.SaslAuthenticate, 0, 2),
    (ApiKey.CreatePartitions, 0, 3),
    (ApiKey.DeleteGroups, 0, 2),
    (ApiKey.IncrementalAlterConfigs, 0, 1),
    (ApiKey.DescribeCluster, 0, 1),
]
ADVERTISED_RANGE = {int(k): (lo, hi) for k, lo, hi in ADVERTISED}

NODE_ID = 1
CLUSTER_ID = "golden-capture-cluster"
MAX_FRAME = 100 * 1024 * 1024  # socket.request.max.bytes
ZERO_UUID = uuid.UUID(int=0)


def _all_message_classes():
    seen, stack = {}, list(ApiMessage.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if getattr(cls, "_class_version", None) is None and getattr(cls, "_json", None):
            if cls.is_request():
                seen[cls.API_KEY] = cls
    return seen


REQUEST_CLASSES = _all_message_classes()


def response_class(api_key):
    return ResponseClassRegistry._response_class_registry[api_key]


def read_uvarint(buf, pos):
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def parse_request_header(frame: bytes):
    """Returns (api_key, api_version, correlation_id, client_id, body offset or None)."""
    api_key, api_version, correlation_id = struct.unpack_from(">hhi", frame, 0)
    (n,) = struct.unpack_from(">h", frame, 8)
    pos = 10 + max(n, 0)
    client_id = None if n < 0 else frame[10:pos].decode("utf-8", "replace")
    req_cls = REQUEST_CLASSES.get(api_key)
    if req_cls is None or api_version > req_cls.max_version:
        return api_key, api_version, correlation_id, client_id, None
    if req_cls.flexible_version_q(api_version):  # request header v2: tagged fields
        count, pos = read_uvarint(frame, pos)
        for _ in range(count):
            _tag, pos = read_uvarint(frame, pos)
            size, pos = read_uvarint(frame, pos)
            pos += size
    return api_key, api_version, correlation_id, client_id, pos


def api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"Api{api_key}"


class CapturedFrame:
    __slots__ = ("label", "conn", "api_key", "api_version", "correlation_id", "client_id", "frame", "request")

    def __init__(self, label, conn, api_key, api_version, correlation_id, client_id, frame, request):
        self.label = label
        self.conn = conn
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.frame = frame
        self.request = request


class FakeBroker:
    """Run with start(); frames land in .frames tagged with the current .label."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.lock = threading.Lock()
        self.frames: list[CapturedFrame] = []
        self.label = None  # set by the driver: which client/step is talking
        self.errors: list[str] = []
        self.next_offset: dict[tuple[str, int], int] = {}
        self.next_producer_id = 4000
        self.topics = ["golden"]
        self._conn_seq = 0
        broker = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                broker._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # --- connection loop ---------------------------------------------------

    def _serve(self, sock: socket.socket):
        with self.lock:
            self._conn_seq += 1
            conn = self._conn_seq
        try:
            while True:
                head = _recv_exact(sock, 4)
                if head is None:
                    return
                (size,) = struct.unpack(">i", head)
                if size < 0 or size > MAX_FRAME:
                    return
                frame = _recv_exact(sock, size)
                if frame is None:
                    return
                reply = self._handle(conn, frame)
                if reply is False:
                    return  # close the connection, as Kafka does
                if reply is not None:
                    sock.sendall(reply)
        except (ConnectionError, OSError):
            return

    def _handle(self, conn, frame: bytes):
        api_key, version, corr, client_id, body_pos = parse_request_header(frame)
        request = None
        if body_pos is not None:
            try:
                request = REQUEST_CLASSES[api_key].decode(frame[body_pos:], version=version, header=False)
            except Exception as e:  # keep the frame; the reply path decides
                self._error(f"cannot decode {api_name(api_key)} v{version}: {e!r}")
        with self.lock:
            self.frames.append(CapturedFrame(self.label, conn, api_key, version, corr, client_id, frame, request))

        if api_key == ApiKey.ApiVersions:
            return self._api_versions(version, corr)
        lo_hi = ADVERTISED_RANGE.get(api_key)
        if lo_hi is None or not lo_hi[0] <= version <= lo_hi[1] or request is None:
            self._error(f"closing connection on {api_name(api_key)} v{version} (not served)")
            return False
        handler = getattr(self, "_" + api_name(api_key), None)
        if handler is None:
            self._error(f"closing connection on {api_name(api_key)} v{version} (no handler in the fake broker)")
            return False
        return handler(version, corr, request)

    def _error(self, message):
        with self.lock:
            self.errors.append(f"[{self.label}] {message}")

    @staticmethod
    def _encode(api_key, version, corr, **fields):
        resp = response_class(api_key)(version=version, **fields)
        resp.with_header(correlation_id=corr)
        return resp.encode(header=True, framed=True)

    # --- handlers ----------------------------------------------------------

    def _api_versions(self, version, corr):
        cls = response_class(ApiKey.ApiVersions)
        lo, hi = ADVERTISED_RANGE[ApiKey.ApiVersions]
        if version > hi:
            # Kafka: error 35 with the v0 body, listing only its own ApiVersions range.
            keys = [cls.ApiVersion(api_key=int(ApiKey.ApiVersions), min_version=lo, max_version=hi)]
            return self._encode(ApiKey.ApiVersions, 0, corr, error_code=35, api_keys=keys)
        keys = [cls.ApiVersion(api_key=int(k), min_version=a, max_version=b) for k, a, b in ADVERTISED]
        # Only default-valued tagged fields: they are not written (librdkafka 2.0.2 mis-skips tags).
        return self._encode(ApiKey.ApiVersions, version, corr, error_code=0, api_keys=keys, throttle_time_ms=0)

    def _Metadata(self, version, corr, req):
        cls = response_class(ApiKey.Metadata)
        if req.topics is None or (version == 0 and len(req.topics) == 0):
            names = list(self.topics)
        else:
            names = [t.name for t in req.topics]
        with self.lock:
            for n in names:
                if n not in self.topics:
                    self.topics.append(n)
        Topic, Partition = cls.MetadataResponseTopic, cls.MetadataResponseTopic.MetadataResponsePartition
        topics = [
            Topic(error_code=0, name=n, topic_id=ZERO_UUID, is_internal=False, partitions=[
                Partition(error_code=0, partition_index=0, leader_id=NODE_ID, leader_epoch=0,
                          replica_nodes=[NODE_ID], isr_nodes=[NODE_ID], offline_replicas=[])])
            for n in names
        ]
        brokers = [cls.MetadataResponseBroker(node_id=NODE_ID, host=self.host, port=self.port, rack=None)]
        return self._encode(ApiKey.Metadata, version, corr, throttle_time_ms=0, brokers=brokers,
                            cluster_id=CLUSTER_ID, controller_id=NODE_ID, topics=topics)

    def _Produce(self, version, corr, req):
        cls = response_class(ApiKey.Produce)
        TopicResp = cls.TopicProduceResponse
        PartResp = TopicResp.PartitionProduceResponse
        responses = []
        for t in req.topic_data:
            parts = []
            for p in t.partition_data:
                count = 0
                records = MemoryRecords(bytes(p.records or b""))
                while records.has_next():
                    batch = records.next_batch()
                    count += batch.last_offset_delta + 1 if batch.magic == 2 else len(list(batch))
                with self.lock:
                    base = self.next_offset.get((t.name, p.index), 0)
                    self.next_offset[(t.name, p.index)] = base + count
                parts.append(PartResp(index=p.index, error_code=0, base_offset=base, log_append_time_ms=-1,
                                      log_start_offset=0, record_errors=[], error_message=None))
            responses.append(TopicResp(name=t.name, partition_responses=parts))
        if req.acks == 0:
            return None
        return self._encode(ApiKey.Produce, version, corr, responses=responses, throttle_time_ms=0)

    def _InitProducerId(self, version, corr, req):
        if req.transactional_id is not None:
            self._error("InitProducerId with a transactional id")
        with self.lock:
            pid = self.next_producer_id
            self.next_producer_id += 1
        return self._encode(ApiKey.InitProducerId, version, corr, throttle_time_ms=0, error_code=0,
                            producer_id=pid, producer_epoch=0)

    def _ListOffsets(self, version, corr, req):
        cls = response_class(ApiKey.ListOffsets)
        TopicResp = cls.ListOffsetsTopicResponse
        PartResp = TopicResp.ListOffsetsPartitionResponse
        topics = []
        for t in req.topics:
            parts = []
            for p in t.partitions:
                end = self.next_offset.get((t.name, p.partition_index), 0)
                if p.timestamp == -1:  # latest
                    ts, off = -1, end
                elif p.timestamp == -2:  # earliest
                    ts, off = -1, 0
                else:  # by timestamp: pretend offset 1 holds it
                    ts, off = p.timestamp, min(1, end)
                parts.append(PartResp(partition_index=p.partition_index, error_code=0, old_style_offsets=[off],
                                      timestamp=ts, offset=off, leader_epoch=0))
            topics.append(TopicResp(name=t.name, partitions=parts))
        return self._encode(ApiKey.ListOffsets, version, corr, throttle_time_ms=0, topics=topics)

    def _FindCoordinator(self, version, corr, req):
        cls = response_class(ApiKey.FindCoordinator)
        if version >= 4:
            coords = [cls.Coordinator(key=k, node_id=NODE_ID, host=self.host, port=self.port, error_code=0,
                                      error_message=None) for k in req.coordinator_keys]
            return self._encode(ApiKey.FindCoordinator, version, corr, throttle_time_ms=0, coordinators=coords)
        return self._encode(ApiKey.FindCoordinator, version, corr, throttle_time_ms=0, error_code=0,
                            error_message=None, node_id=NODE_ID, host=self.host, port=self.port)

    def _DescribeCluster(self, version, corr, req):
        cls = response_class(ApiKey.DescribeCluster)
        brokers = [cls.DescribeClusterBroker(broker_id=NODE_ID, host=self.host, port=self.port, rack=None)]
        return self._encode(ApiKey.DescribeCluster, version, corr, throttle_time_ms=0, error_code=0,
                            error_message=None, cluster_id=CLUSTER_ID, controller_id=NODE_ID, brokers=brokers)


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


if __name__ == "__main__":
    import time

    b = FakeBroker().start()
    print(f"fake broker on {b.bootstrap}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(1)
            with b.lock:
                new, b.frames = b.frames, []
            for f in new:
                print(f"conn {f.conn}: {api_name(f.api_key)} v{f.api_version} from {f.client_id!r}", flush=True)
    except KeyboardInterrupt:
        b.stop()
