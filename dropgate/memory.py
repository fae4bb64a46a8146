"""Hand the memory a finished stage freed back to the operating system.

Why: glibc's malloc keeps what a process frees for its own reuse. A large file's stages each churn
through millions of short-lived objects (segments, index rows, a delivery report per event), and
what one stage freed stays in the process's resident set under the next stage's peak: about 10 MB
of a million-product file's peak from S3 (``bench/results.md``). The Lambda function is killed on
its resident set, not on what Python holds. ``malloc_trim(0)`` returns free pages to the kernel,
from inside the heap too (glibc 2.8 and later), in a few milliseconds.

No library offers this one call, hence ctypes. Where the C library is not glibc (musl, macOS) it
does nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes  # here, not at import: the handler's cold start does not pay for it

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


def give_back() -> bool:
    """Return the pages malloc holds free to the kernel; ``False`` where that cannot be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
