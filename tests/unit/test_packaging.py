import tomllib

from tests.conftest import REPO


def test_requirements_txt_matches_pyproject_runtime_dependencies() -> None:
    """`sam build` installs requirements.txt; it must not drift from what pip installs (plus the msk
    extra, so a deployed function supports every broker authentication mode)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["msk"]
    lines = (REPO / "requirements.txt").read_text().splitlines()
    listed = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert listed == declared
