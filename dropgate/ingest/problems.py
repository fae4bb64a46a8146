"""Which problems make a file unusable, and the capped list of them a file keeps."""

from __future__ import annotations

from parsers.base import Problem

#: Problems that make a file unusable as a whole, whatever the partner's policy.
FATAL_KINDS = frozenset({"xml_syntax", "unknown_format", "encoding", "security_limit", "empty", "parser_error"})


def is_fatal(problem: Problem) -> bool:
    """Fatal: the kinds above, and any problem about the document rather than one record (wrong
    partner, unusable snapshot time): skipping records cannot make such a file right."""
    return problem.kind in FATAL_KINDS or problem.record is None


class ProblemCollector:
    """Keeps the first ``cap`` problems and counts them all; a fatal problem is always kept
    (there are few: parsing stops at the first), so the cap can never hide why a file failed."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept: list[Problem] = []
        self.total = 0
        self.fatal = False

    def add(self, problem: Problem) -> None:
        problem = problem.bounded()  # kept problems go to the sidecar and the ledger: bounded whatever the file
        self.total += 1
        fatal = is_fatal(problem)
        self.fatal = self.fatal or fatal
        if len(self.kept) < self.cap or fatal:
            self.kept.append(problem)

    @property
    def room(self) -> int:
        """How many more (non-fatal) problems would be kept."""
        return max(0, self.cap - len(self.kept))

    def tally(self, count: int) -> None:
        """Count ``count`` non-fatal problems past the cap without building them."""
        self.total += count


def too_large(size: int, limit: int) -> Problem:
    """A file refused before a byte is read: the declared size of a pinned version is authoritative."""
    return Problem(
        kind="security_limit",
        message=f"the file is {size:,} bytes, over the limit of {limit:,}; split it or raise the limit",
        field="max_object_bytes",
        value=str(limit),
    )


EMPTY = Problem(kind="empty", message="the file is empty (0 bytes); send the complete file")
