"""Real components, locally: a Kafka-protocol broker (tansu) and AWS (moto's server).

Used by ``dropgate demo`` and by the integration and end-to-end tests, so the path a developer
watches in the demo is the path the tests assert on.
"""
