"""Streaming: the Kafka consumer that joins impressions with outcomes and learns online.

Only `streams.kafka_io` imports kafka-python; everything else here is testable without a broker.
"""
