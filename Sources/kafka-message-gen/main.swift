import KafkaMessageGen
print("placeholder")
