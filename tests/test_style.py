"""Code style is part of the suite: ruff's default lint rules and formatter, and the layering rule."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _ruff(*args):
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_ruff_lint_passes():
    result = _ruff("check")
    assert result.returncode == 0, result.stdout


def test_ruff_format_is_clean():
    result = _ruff("format", "--check")
    assert result.returncode == 0, result.stdout


def test_core_library_never_imports_streamlit():
    offenders = [
        str(p)
        for p in (REPO / "ood_core").rglob("*.py")
        if "import streamlit" in p.read_text()
    ]
    assert offenders == []


def test_readme_lists_every_registered_method():
    from ood_core.scores import METHODS

    readme = (REPO / "README.md").read_text()
    assert [name for name in METHODS if f"| `{name}` |" not in readme] == []


def test_readme_library_example_runs(demo_model, capsys):
    import re

    code = re.search(
        r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL
    ).group(1)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102
    assert "NormRatio" in capsys.readouterr().out
