"""What gets installed is what was locked, and what is published installs and runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

import tools.lockfile as lockfile
from tests.conftest import REPO

DEV, LAMBDA = REPO / "requirements" / "dev.lock", REPO / "requirements" / "lambda.lock"


def test_the_locks_were_made_from_pyproject_as_it_is() -> None:
    assert lockfile.stale() == []


def test_a_dependency_changed_without_relocking_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    project["project"]["dependencies"].append("tenacity>=9")
    monkeypatch.setattr(lockfile, "_project", lambda: project)
    assert lockfile.stale() == [
        "requirements/dev.lock was made from other requirements: run `make lock`",
        "requirements/lambda.lock was made from other requirements: run `make lock`",
    ]


def test_every_locked_package_is_pinned_with_hashes() -> None:
    for lock in (DEV, LAMBDA):
        entries = lockfile.entries(lock)
        assert len(entries) > 20
        for name, entry in entries:
            assert "--hash=sha256:" in entry, f"{lock.name}: {name} has no hash"


def test_the_lambda_lock_pins_the_versions_the_suite_runs_with() -> None:
    dev = {(name, version) for name, version in re.findall(r"^([\w.\-]+)==([^\s;\\]+)", DEV.read_text(), re.M)}
    for name, version in re.findall(r"^([\w.\-]+)==([^\s;\\]+)", LAMBDA.read_text(), re.M):
        assert (name, version) in dev, f"lambda.lock pins {name}=={version}, dev.lock does not"


def test_the_lambda_lock_leaves_the_cli_out() -> None:
    names = {name for name, _ in lockfile.entries(LAMBDA)}
    assert names.isdisjoint(lockfile.CLI_ONLY)
    assert {"lxml", "confluent-kafka", "aws-msk-iam-sasl-signer-python"} <= names


def test_the_wheel_ranges_have_a_floor_and_a_ceiling() -> None:
    """Someone who `pip install`s dropgate gets tested majors: the lock is ours, the ranges are theirs."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["msk"]]:
        assert ">=" in requirement and "<" in requirement.replace("<=", ""), requirement


def test_the_installed_wheel_reads_its_own_partners_yaml(tmp_path: Path) -> None:
    """`dropgate partners` from the wheel, in a folder with no partners.yaml, reads the shipped one.
    The wheel holds the product only: the local stack beside it in the checkout (devstack/) stays out."""
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "partners.yaml"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, source / name)
    for package in ("dropgate", "parsers", "handlers", "devstack"):
        shutil.copytree(REPO / package, source / package, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    built = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(built), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = built.glob("dropgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if "/" in name and ".dist-info/" not in name}
    assert packages == {"dropgate", "parsers", "handlers"}
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    shipped = site / "dropgate" / "partners.yaml"
    assert not shipped.is_symlink() and shipped.read_bytes() == (REPO / "partners.yaml").read_bytes()
    # -S: no .pth files, so the checkout's editable install is not on the path; the wheel is, first.
    path = f"{site}:{sysconfig.get_paths()['purelib']}"
    done = subprocess.run(
        [sys.executable, "-S", "-c", "from dropgate.cli import main; main()", "partners"],
        cwd=tmp_path,
        env={"PYTHONPATH": path, "COLUMNS": "80", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"partners ({shipped})" in done.stdout
    assert "acme/" in done.stdout
