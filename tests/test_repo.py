"""The repository keeps its promises: CI runs exactly the README's test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_last = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()][-1]
    readme = (ROOT / "README.md").read_text()
    assert ci_last in readme, f"README lacks the CI command: {ci_last}"
    assert readme.index(ci_last) < readme.index("## "), "the test command must come first"
