"""Every API the real logbroker-server advertises, at every version it advertises, on a raw socket.

Real clients each use one version of each API, so they alone cannot show that every advertised version answers.
This asks ApiVersions, then for each (api, version) sends a minimal valid request encoded by kafka-python 3.0.12's
protocol classes and checks the answer as a client would: one frame, whose correlation id is the request's, that
kafka-python's response class for that version decodes using exactly the frame's bytes. It iterates over what the
broker advertises, so an API added later is covered without editing this file.

Every advertised version answers, Produce v0-2 (magic 0/1 message sets, served as Kafka 3.9 does) included. A version
kafka-python cannot encode is reported as a skip with its reason."""
import importlib
import io
import socket
import struct
import warnings

import pytest

from conftest import read_frame

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.api_message import ApiMessage
    from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

    for module in ("admin", "consumer", "metadata", "producer", "sasl"):
        importlib.import_module(f"kafka.protocol.{module}")

# Field values that make a default request a sensible minimal one, applied where the request has the field:
# a Produce that wants an answer, a Fetch that does not wait, ApiVersions v3+ with the names KIP-511 requires, a
# consumer's replica id, a coordinator key, an idempotent (not transactional) InitProducerId.
OVERRIDES = {
    "acks": -1,
    "timeout_ms": 1000,
    "max_wait_ms": 0,
    "client_software_name": "logbroker-tests",
    "client_software_version": "1.0",
    "replica_id": -1,
    "key": "every-api-version",
    "transactional_id": None,
}

# What the group APIs answer a minimal request (empty group id, no member, session timeout 0), as Kafka does:
# JoinGroup INVALID_GROUP_ID (24) or INVALID_SESSION_TIMEOUT (26); SyncGroup, Heartbeat and LeaveGroup
# UNKNOWN_MEMBER_ID (25); OffsetDelete GROUP_ID_NOT_FOUND (69).
GROUP_ANSWERS = {11: (24, 26), 14: (25,), 12: (25,), 13: (25,), 47: (69,)}
# DescribeQuorum without `__cluster_metadata` partition 0 gets UNKNOWN_TOPIC_OR_PARTITION (3), as Kafka's Raft
# client answers it.
OTHER_ANSWERS = {55: (3,)}

def request_classes():
    """kafka-python's request classes by API key."""
    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    classes = {}
    for cls in walk(ApiMessage):
        try:
            if cls._class_version is None and cls.is_request():
                classes.setdefault(cls.API_KEY, cls)
        except (AttributeError, TypeError):
            continue
    return classes


def response_class(request_class):
    name = request_class.__name__[: -len("Request")] + "Response"
    return type(request_class(version=0)).__module__, name


def decode_exactly(cls, version, payload):
    """The header and body of `payload` decoded as `cls` at `version`, checking every byte was used."""
    header_stream = io.BytesIO(payload)
    header = cls.parse_header(header_stream, version=version)
    position = header_stream.tell()
    flexible = cls.flexible_version_q(version)
    decode = cls._struct.compiled_decode_from(version, compact=flexible, tagged=flexible, data_class=cls[None])
    body, end = decode(memoryview(payload), position)
    assert end == len(payload), f"{cls.__name__} v{version} decoded {end} of {len(payload)} bytes"
    return header, body


def connect(broker):
    host, port = broker.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def advertised(broker):
    request = ApiVersionsRequest(version=3, client_software_name="logbroker-tests", client_software_version="1.0")
    request.with_header(correlation_id=1, client_id="every-api-version")
    with connect(broker) as sock:
        sock.sendall(request.encode(header=True, framed=True))
        header, body = decode_exactly(ApiVersionsResponse, 3, read_frame(sock))
    assert header.correlation_id == 1
    assert body.error_code == 0
    return [(api.api_key, api.min_version, api.max_version) for api in body.api_keys]


def minimal_request(cls, version):
    request = cls(version=version)
    for field, value in OVERRIDES.items():
        if hasattr(request, field):
            setattr(request, field, value)
    return request


def test_every_advertised_api_version_answers_a_decodable_frame(broker):
    classes = request_classes()
    apis = advertised(broker)
    assert {0, 1, 2, 3, 18} <= {key for key, _, _ in apis}
    checked, skipped = [], []
    correlation_id = 100
    for key, low, high in apis:
        request_class = classes.get(key)
        if request_class is None:
            skipped.append(f"api {key}: kafka-python 3.0.12 has no protocol class")
            continue
        module_name, response_name = response_class(request_class)
        response_cls = getattr(importlib.import_module(module_name), response_name)
        for version in range(low, high + 1):
            if version > request_class.max_version:
                skipped.append(f"{request_class.__name__} v{version}: above kafka-python's {request_class.max_version}")
                continue
            correlation_id += 1
            request = minimal_request(request_class, version)
            request.with_header(correlation_id=correlation_id, client_id="every-api-version")
            frame = request.encode(header=True, framed=True)
            with connect(broker) as sock:
                sock.sendall(frame)
                payload = read_frame(sock)
                label = f"{request_class.__name__} v{version}"
                assert payload is not None, f"{label}: the broker closed the connection"
                header, body = decode_exactly(response_cls, version, payload)
                assert header.correlation_id == correlation_id, label
                # Nothing follows the one response.
                sock.settimeout(0.2)
                try:
                    extra = sock.recv(1)
                except socket.timeout:
                    extra = b""
                assert extra == b"", f"{label}: bytes after the response"
                if hasattr(body, "error_code") and key != 18:
                    # Minimal requests are valid: a top-level error would mean the request was misread, except
                    # the refusals documented in the README (FindCoordinator, the SASL APIs on PLAINTEXT), the
                    # group APIs' answers to a member of no group and DescribeQuorum's to no partition (as Kafka
                    # answers them).
                    allowed = (0, 15, 34) + GROUP_ANSWERS.get(key, ()) + OTHER_ANSWERS.get(key, ())
                    assert body.error_code in allowed, f"{label}: error {body.error_code}"
                checked.append(label)
    for reason in skipped:
        print("skipped:", reason)
    print(f"{len(checked)} api versions answered")
    assert checked
    # Produce v0-2 answer like the rest (Kafka 4 closes the connection; Kafka 3.9, and LogBroker, serve them).
    assert {"ProduceRequest v0", "ProduceRequest v1", "ProduceRequest v2"} <= set(checked)
