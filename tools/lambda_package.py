"""The code both Lambda functions run, built here without Docker: ``make package``.

``build --arch arm64`` (the template's architecture) or ``--arch x86_64`` (the host's twin, which
``make test`` runs) makes ``build/lambda/<arch>/`` and ``build/lambda-<arch>.zip``:

- the packages in ``requirements/lambda.lock`` as manylinux wheels for that architecture and the
  template's Python (pip ``--platform``/``--python-version``, binaries only, every hash checked);
- dropgate's own code (dropgate, parsers, handlers; not the local stack and demo in devstack/) less
  what only the CLI imports (so no typer or rich), and ``partners.yaml`` at the root, where
  ``DROPGATE_PARTNERS=partners.yaml`` finds it;
- bytecode compiled by the runtime's own Python (unchecked-hash ``.pyc``: valid whatever the
  timestamps, and Lambda's code directory is read-only, so nothing would be compiled there).

``report --arch A`` prints the unzipped and zipped size and the cold import time of both handlers,
with the runtime's Python and nothing but the package on its path.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import zipfile
from pathlib import Path

from tools.lockfile import REPO, lambda_python, template_setting

LOCK = REPO / "requirements" / "lambda.lock"
#: The ELF ``e_machine`` of each architecture the template may name.
MACHINES = {"arm64": 183, "x86_64": 62}
_PLATFORM_ARCH = {"arm64": "aarch64", "x86_64": "x86_64"}
#: Lambda's Python runtimes run on Amazon Linux 2023 (glibc 2.34): any manylinux wheel up to 2_34 runs.
_GLIBC = ["2_34", "2_28", "2_17"]
#: Own code the functions never import: the CLI and its rendering (typer, rich) and what only it and
#: the local stack use. tests/e2e/test_lambda_package.py holds the rest to it. (The local stack and the
#: demo themselves live in devstack/, which is not one of OWN_PACKAGES.)
EXCLUDED = (
    "dropgate/cli",
    "dropgate/render.py",
    "dropgate/provision.py",
    "dropgate/adapters/kafka_topic_reader.py",
    "dropgate/partners.yaml",  # the checkout's symlink; the package has the real file at its root
)
OWN_PACKAGES = ("dropgate", "parsers", "handlers")


def template_arch() -> str:
    """The architecture the template's functions run on (``Architectures: [arm64]``)."""
    return template_setting(r"Architectures: \[(\w+)\]")


def default_out(arch: str) -> Path:
    return REPO / "build" / "lambda" / arch


def runtime_python() -> str:
    """The interpreter of the template's runtime (``python3.12``): pyenv's, else one on PATH.

    Each candidate is asked its version: a pyenv shim for a version not selected is on PATH but fails.
    """
    version = lambda_python()
    candidates = [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))]
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in filter(None, candidates):
        asked = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        )
        if asked.returncode == 0 and asked.stdout.strip() == version:
            return candidate
    raise SystemExit(
        f"python{version} (the template's runtime) is not installed: the package's bytecode must be compiled "
        f"by it. Install it (e.g. `pyenv install {version}`) and run make again."
    )


def _install_wheels(out: Path, arch: str) -> None:
    platforms = [f"manylinux_{glibc}_{_PLATFORM_ARCH[arch]}" for glibc in _GLIBC]
    platforms.append(f"manylinux2014_{_PLATFORM_ARCH[arch]}")
    command = [
        *(sys.executable, "-m", "pip", "install", "--quiet", "--target", str(out)),
        *("--require-hashes", "--no-deps", "--only-binary=:all:", "--no-compile"),
        *("--implementation", "cp", "--python-version", lambda_python()),
        *(argument for platform in platforms for argument in ("--platform", platform)),
        *("-r", str(LOCK)),
        # The lock was resolved for the runtime's Python; older pips (23.2, what a new venv has) check
        # Requires-Python against the interpreter running pip, not --python-version, and refuse numpy.
        "--ignore-requires-python",
    ]
    subprocess.run(command, check=True)
    shutil.rmtree(out / "bin", ignore_errors=True)  # console scripts: nothing runs them on Lambda
    # Libraries' own test suites (numpy's are a fifth of the package); nothing imports them at run time.
    for tests in sorted(out.glob("*/**/tests"), reverse=True):
        if tests.is_dir():
            shutil.rmtree(tests)


def _copy_own_code(out: Path) -> None:
    excluded = {REPO / path for path in EXCLUDED}

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {name for name in names if Path(directory, name) in excluded or name == "__pycache__"}

    for package in OWN_PACKAGES:
        shutil.copytree(REPO / package, out / package, ignore=ignore)
    shutil.copyfile(REPO / "partners.yaml", out / "partners.yaml")


def foreign_binaries(out: Path, arch: str) -> list[str]:
    """Every shared object in ``out`` not built for ``arch`` (by its ELF header)."""
    wanted = MACHINES[arch]
    foreign = []
    for path in sorted(out.rglob("*.so*")):
        with path.open("rb") as file:
            header = file.read(20)
        if header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") != wanted:
            foreign.append(str(path.relative_to(out)))
    return foreign


def _zip(out: Path, archive: Path) -> None:
    """A reproducible zip: sorted names, one timestamp, permissions kept (what Lambda unpacks)."""
    archive.unlink(missing_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zipped:
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(out)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zipped.writestr(info, path.read_bytes())


def build(arch: str, out: Path | None) -> Path:
    target = out or default_out(arch)
    if out is None:
        shutil.rmtree(target, ignore_errors=True)
    elif target.exists() and any(target.iterdir()):
        raise SystemExit(f"{target} is not empty; the package is built into an empty folder")
    target.mkdir(parents=True, exist_ok=True)
    _install_wheels(target, arch)
    _copy_own_code(target)
    compile_command = [runtime_python(), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*compile_command, "-s", str(target), "-p", "/var/task", str(target)], check=True)
    foreign = foreign_binaries(target, arch)
    if foreign:
        raise SystemExit(f"binaries not built for {arch} in the package: {', '.join(foreign[:10])}")
    if out is None:
        _zip(target, target.parent.parent / f"lambda-{arch}.zip")
    return target


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def cold_import_ms(package: Path, rounds: int = 5) -> float:
    """Median time to import both handlers in a new runtime interpreter that sees only the package."""
    probe = (
        "import time; t = time.perf_counter(); import handlers.ingest, handlers.reprocess; "
        "print(time.perf_counter() - t)"
    )
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(package), "PYTHONNOUSERSITE": "1"}
    times = []
    for _ in range(rounds + 1):  # the first round reads the files from disk; it is not counted
        done = subprocess.run(
            [runtime_python(), "-S", "-c", probe], env=environment, capture_output=True, text=True, check=True
        )
        times.append(float(done.stdout) * 1000)
    return statistics.median(times[1:])


def report(arch: str) -> None:
    package = default_out(arch)
    archive = package.parent.parent / f"lambda-{arch}.zip"
    line = f"Lambda package {package.relative_to(REPO)}: {size_mb(package):.1f} MB unzipped"
    if archive.exists():
        line += f", {size_mb(archive):.1f} MB zipped"
    if MACHINES[arch] == MACHINES[host_arch()]:
        line += f"; cold import of both handlers (python{lambda_python()}): {cold_import_ms(package):.0f} ms"
    print(line)


def host_arch() -> str:
    machine = os.uname().machine
    return "arm64" if machine in ("aarch64", "arm64") else machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "report"])
    parser.add_argument("--arch", choices=sorted(MACHINES), help="default: the template's (Architectures)")
    parser.add_argument("--out", type=Path, help="build: this (empty) folder instead of build/lambda/<arch>")
    parser.add_argument("--and-host", action="store_true", help="build: also the host architecture's twin")
    arguments = parser.parse_args()
    arches = [arguments.arch or template_arch()]
    if arguments.and_host and host_arch() not in arches:
        arches.append(host_arch())
    for arch in arches:
        if arguments.action == "build":
            built = build(arch, arguments.out)
            print(f"built {built} for {arch}, python{lambda_python()}")
        if arguments.out is None:
            report(arch)


if __name__ == "__main__":
    main()
