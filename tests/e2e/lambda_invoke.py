"""Runs inside the built Lambda package, with the runtime's Python: ``python -S lambda_invoke.py``.

Nothing but the standard library and the package is importable (``-S`` drops site-packages and the
test passes ``PYTHONPATH=<package>``), as on Lambda. Reads the event on stdin, invokes the ingest
handler with a minimal context and prints the response, plus where the modules were loaded from.
"""

import json
import sys
import time
import uuid

import lxml.etree  # noqa: F401 - where it loads from is checked

import handlers.ingest
import handlers.reprocess


class Context:
    function_name = "dropgate-ingest"
    memory_limit_in_mb = 1024
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dropgate-ingest"
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/dropgate-ingest"
    log_stream_name = "package-test"
    _deadline = time.monotonic() + 300

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


response = handlers.ingest.handler(json.load(sys.stdin), Context())
loaded = {name: module.__file__ for name, module in sys.modules.items() if getattr(module, "__file__", None)}
print(
    json.dumps(
        {
            "response": response,
            "files": [loaded[name] for name in ("handlers.ingest", "handlers.reprocess", "lxml.etree")],
            "cli_loaded": sorted(name for name in sys.modules if name.split(".")[0] in ("typer", "rich")),
            "python": list(sys.version_info[:2]),
        }
    )
)
