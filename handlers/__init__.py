"""Thin Lambda entrypoints: translate a trigger into object versions and call the core."""
