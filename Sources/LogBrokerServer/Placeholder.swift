import KafkaNIO
