"""The local stack, outside the product: a Kafka-protocol broker (tansu), AWS (moto's server), Lambda's
SQS trigger in miniature, a local FTP drop, a fault proxy, the soak run and the demo.

Used by ``python -m devstack`` (``make demo``, ``make soak``) and by the integration and end-to-end
tests, so the path a developer watches in the demo is the path the tests assert on. It is neither in
the wheel (pyproject.toml packages only dropgate, parsers and handlers) nor in the Lambda package, and
no module of dropgate, parsers or handlers imports it (tests/unit/test_layering.py).
"""
