import KafkaRecords
print("placeholder")
