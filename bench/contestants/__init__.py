"""The comparison contestants of ``bench.run``: floors (what the hardware, lxml and librdkafka can do
with no product logic) and peers (what a user would write with pandas or xmltodict).

Each is a small script run in its own fresh process, e.g.
``python -m bench.contestants.floor_combined FILE --bootstrap HOST:PORT --topic T``, and prints one
JSON line on stdout with what it did (records, tombstones, delivery errors, …) for the harness to
check against the topic.
"""
