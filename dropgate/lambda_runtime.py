"""The Lambda runtime's limits, as the core needs them: when to stop, and how long a delivery may take.

Only the context object's remaining time is read; no trigger shape is known here.
"""

from __future__ import annotations

import os
import time
from typing import Any

#: Stop producing this long before Lambda's own timeout, so the failure is ours, logged and clean.
SAFETY_MARGIN_S = 10.0


#: Deliveries must give up this long before the function is killed.
DELIVERY_MARGIN_S = 15.0
_derived = False


def derive_delivery_timeout(context: Any) -> None:
    """At cold start, keep ``delivery.timeout.ms`` below the function's timeout, whatever was configured.

    CloudFormation cannot compute it from the timeout, so the function does: the first invocation's
    remaining time is the timeout. Must run before the ingestor (and its producer) is built."""
    global _derived
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None or _derived:
        return
    _derived = True
    ceiling = int(float(remaining()) - DELIVERY_MARGIN_S * 1000)
    configured = int(os.environ.get("DROPGATE_DELIVERY_TIMEOUT_MS", "120000"))
    if 1000 <= ceiling < configured:
        os.environ["DROPGATE_DELIVERY_TIMEOUT_MS"] = str(ceiling)


def deadline(context: Any) -> float | None:
    """A ``time.monotonic()`` instant to stop at: the remaining time less a safety margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + max(1.0, float(remaining()) / 1000 - SAFETY_MARGIN_S)
