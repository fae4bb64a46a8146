"""The ingest path, stage by stage: routing → reading → event building → service → outcome.

See ARCHITECTURE.md for the path a file takes and where each rule lives.
"""
