"""Adapters: the edges where dropgate meets S3, DynamoDB, Kafka and the local disk."""
