import KafkaWire
