"""Transactional producers are refused at once, with an error that names the cause, instead of retrying until their
timeout: both clients look up the transaction coordinator and get TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) from
FindCoordinator, which they treat as fatal."""
import time
import warnings

import confluent_kafka
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka
    from kafka.errors import TransactionalIdAuthorizationFailedError


def test_kafka_python_init_transactions_fails_at_once(broker):
    producer = kafka.KafkaProducer(bootstrap_servers=broker, transactional_id="txn-1", max_block_ms=30_000)
    started = time.monotonic()
    with pytest.raises(TransactionalIdAuthorizationFailedError):
        producer.init_transactions()
    assert time.monotonic() - started < 5
    producer.close(timeout=5)


def test_confluent_kafka_init_transactions_fails_at_once(broker):
    producer = confluent_kafka.Producer({"bootstrap.servers": broker, "transactional.id": "txn-1", "log_level": 0})
    started = time.monotonic()
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        producer.init_transactions(30)
    assert time.monotonic() - started < 5
    error = raised.value.args[0]
    assert error.fatal() and not error.retriable()
    assert error.code() == confluent_kafka.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error
    assert "does not support transactions" in error.str()
