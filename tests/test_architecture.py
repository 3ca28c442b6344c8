"""The import contracts in pyproject.toml ([tool.importlinter]) hold, and they would catch a back-edge.

``lint-imports`` reads every import statement, including those inside functions, so a lower layer
that reaches up (evaluators importing preference_data, say) fails here, in CI, whatever line hides it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("candidate_losses", "evaluators", "preference_data", "discovery", "prompts")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail("lint-imports is missing: install the test extra (scripts/setup does)")
    env = {**os.environ, "PYTHONPATH": str(root)}  # the packages under `root`, ahead of the installed ones
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_layer_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_tree(dest: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")


@pytest.mark.parametrize("module, back_edge, contract", [
    # a lower layer importing a higher one, hidden inside a function as the old tier code did
    ("evaluators/api.py", "def _hidden():\n    from preference_data.spa import tier\n",
     "Layers point one way"),
    ("candidate_losses/registry.py", "def _hidden():\n    import discovery.search.campaign\n",
     "Layers point one way"),
    # inside discovery: the archive reaching up into the search loop
    ("discovery/archive/database.py", "def _hidden():\n    from discovery.search import cascade\n",
     "Inside discovery"),
    # a cycle between siblings (plots already feeds the report)
    ("discovery/review/plots.py", "def _hidden():\n    from discovery.review import report\n",
     "No import cycles"),
])
def test_a_back_edge_breaks_a_contract(tmp_path: Path, module: str, back_edge: str, contract: str) -> None:
    _copy_tree(tmp_path)
    clean = lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr  # the copy itself is clean
    with (tmp_path / module).open("a") as fh:
        fh.write("\n\n" + back_edge)
    broken = lint_imports(tmp_path)
    assert broken.returncode != 0
    assert "BROKEN" in broken.stdout and contract in broken.stdout.replace("\n", " ")
