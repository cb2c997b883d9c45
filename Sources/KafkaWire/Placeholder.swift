public enum KafkaWirePlaceholder {}
