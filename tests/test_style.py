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


def test_import_layers_and_purity_contracts_hold():
    """import-linter (contracts in pyproject.toml): data flows one way, scores never import the engine or inputs,
    and nothing in ood_core imports streamlit or the pages."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--config",
            str(REPO / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_readme_methods_table_is_the_registry():
    """The README's methods table is exactly what the registry generates (`python -m ood_core list --markdown`)."""
    from ood_core.tables import methods_markdown

    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- methods:start -->\n")[1].split("\n<!-- methods:end -->")[
        0
    ]
    assert table == methods_markdown()


def test_readme_library_example_runs(demo_model, capsys):
    import re

    code = re.search(
        r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL
    ).group(1)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102
    assert "NormRatio" in capsys.readouterr().out
