"""A client configured for SASL against logbroker-server's PLAINTEXT listener gets a clear authentication error, as
against Kafka: the broker advertises SaslHandshake and answers ILLEGAL_SASL_STATE with no mechanisms."""
import time

import confluent_kafka


def test_confluent_kafka_with_sasl_gets_an_authentication_error(broker):
    errors = []
    producer = confluent_kafka.Producer({
        "bootstrap.servers": broker, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
        "sasl.username": "user", "sasl.password": "secret", "error_cb": errors.append,
        "reconnect.backoff.ms": 1000, "log_level": 0,
    })
    deadline = time.time() + 10
    while not errors and time.time() < deadline:
        producer.poll(0.2)
    assert errors, "no error reported"
    error = errors[0]
    assert error.code() == confluent_kafka.KafkaError._AUTHENTICATION, error
    assert "SASL" in error.str() and "Request not valid in current SASL state" in error.str(), error.str()
