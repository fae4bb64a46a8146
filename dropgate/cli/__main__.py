"""``python -m dropgate.cli`` (the benches run the CLI this way)."""

from dropgate.cli import main

main()
