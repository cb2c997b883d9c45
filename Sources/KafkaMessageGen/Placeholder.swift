public enum KafkaMessageGenPlaceholder {}
