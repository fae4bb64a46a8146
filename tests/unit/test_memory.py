"""``dropgate.memory.give_back``: free pages go back to the kernel on glibc, and nothing breaks elsewhere."""

from __future__ import annotations

import platform

from dropgate.memory import give_back


def _resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def test_freed_memory_leaves_the_resident_set() -> None:
    assert platform.libc_ver()[0] == "glibc"  # the machines this runs on, and the Lambda runtime
    # 40 MB in kilobyte objects (malloc's, not pymalloc's), the newest quarter kept: what was freed
    # lies below memory still in use, where the heap cannot simply shrink.
    blocks = [bytes(1024) for _ in range(40_000)]
    kept = blocks[-10_000:]
    del blocks
    before = _resident_kib()
    assert give_back() is True
    assert _resident_kib() < before - 20_000  # most of the freed 30 MB handed back
    del kept
