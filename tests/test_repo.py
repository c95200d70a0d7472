"""The repository keeps its promises: CI runs exactly the README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_last = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()][-1]
    readme = (ROOT / "README.md").read_text()
    assert ci_last in readme, f"README lacks the CI command: {ci_last}"
    assert readme.index(ci_last) < readme.index("## "), "the test command must come first"


def test_demo_scripts_are_the_cli_demos():
    """Each script in demos/ reaches its ``ttt-video demo`` subcommand (its --help)."""
    import subprocess
    import sys

    for kind in ("predict", "classify", "stream"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "demos" / f"{kind}_video.py"), "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"ttt-video demo {kind}" in out and "Example" in out


def test_test_modules_have_unique_basenames():
    """pytest's default import mode needs unique test-module names across folders."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_readme_file_table_matches_the_tree():
    """Every path in the README's file table exists, and every package room is in it."""
    import re

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Files") :]
    paths = re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)
    assert paths
    for path in paths:
        assert (ROOT / path).exists(), path
    rooms = {
        str(p.parent.relative_to(ROOT)) + "/"
        for p in (ROOT / "ttt_video").rglob("__init__.py")
        if p.parent != ROOT / "ttt_video"
    }
    listed = {p for p in paths if p.endswith("/")}
    missing = [room for room in sorted(rooms) if not any(room.startswith(p) for p in listed)]
    assert not missing, missing


def test_repository_points_to_nothing_outside_it():
    """Docs and code cite only files of the repository (a user has nothing else): no
    relative path in them climbs out of the checkout."""
    offenders = []
    for path in ROOT.rglob("*"):
        if ".git" in path.parts or not path.is_file() or path.suffix not in {".py", ".md", ".yaml"}:
            continue
        for climb in re.findall(r"(?:\.\./)+[\w.-]*", path.read_text(errors="ignore")):
            if not (path.parent / climb).resolve().is_relative_to(ROOT):
                offenders.append(f"{path.relative_to(ROOT)}: {climb}")
    assert not offenders, offenders
