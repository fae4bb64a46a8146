"""The soak run in small: files through S3 → SQS → handler with duplicate notifications and a broker
outage in the middle; nothing lost, every key ends in the newest state. (`make soak` runs 1,000.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def test_small_soak_loses_nothing_and_ends_in_the_newest_state() -> None:
    """As `make soak` runs it (`python -m devstack soak`), with the report as JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "soak", "--files", "40", "--seed", "11", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The report is the last thing printed (Powertools writes its cold-start metric line before it).
    report = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert report["files"] == 40
    assert report["lost_files"] == 0
    assert report["keys_wrong"] == 0, report["examples"]
    assert report["published"] + report["quarantined"] == 40
    assert report["quarantined"] == 1  # one deliberately broken file (every 25th)
    assert report["duplicates_injected"] > 0
    assert report["outage_at_batch"] is not None and report["failed_deliveries"] > 0  # the outage really hit files
    assert report["events_on_topic"] >= report["events_acknowledged"] > 0
    assert report["ok"]
