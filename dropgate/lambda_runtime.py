"""The Lambda runtime's limits, as the core needs them: when to stop, and how long a delivery may take.

Only the context object's remaining time is read; no trigger shape is known here.
"""

from __future__ import annotations

import time
from typing import Any

#: Stop producing this long before Lambda's own timeout, so the failure is ours, logged and clean.
SAFETY_MARGIN_S = 10.0
#: Deliveries must give up this long before the function is killed.
DELIVERY_MARGIN_S = 15.0


def delivery_timeout_ms(context: Any, configured: int) -> int:
    """``delivery.timeout.ms`` kept below the function's timeout, whatever was configured.

    CloudFormation cannot compute it from the timeout, so the function does: at the first
    invocation (when the ingestor and its producer are built) the remaining time is the timeout."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return configured
    ceiling = int(float(remaining()) - DELIVERY_MARGIN_S * 1000)
    return ceiling if 1000 <= ceiling < configured else configured


def deadline(context: Any) -> float | None:
    """A ``time.monotonic()`` instant to stop at: the remaining time less a safety margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + max(1.0, float(remaining()) / 1000 - SAFETY_MARGIN_S)
