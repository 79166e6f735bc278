"""The core stays pure: no kopf, no kubernetes, no subprocess, no clock, no I/O modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "operator" / "hpo_operator" / "core"
FORBIDDEN = {"kopf", "kubernetes", "subprocess", "socket", "time", "datetime", "os", "shutil"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


CORE_FILES = sorted(CORE.rglob("*.py"))


def test_the_core_has_modules() -> None:
    assert len(CORE_FILES) >= 8


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_nothing_impure(path: Path) -> None:
    assert imported_modules(path) & FORBIDDEN == set()


def test_the_scan_sees_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import subprocess\nfrom kubernetes import client\nimport os.path\n")
    assert imported_modules(bad) & FORBIDDEN == {"subprocess", "kubernetes", "os"}


def test_importing_the_core_loads_no_forbidden_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import hpo_operator.core.spec, hpo_operator.core.search, "
        "hpo_operator.core.status, hpo_operator.core.plan, hpo_operator.core.results; "
        "print(' '.join(m for m in ('kopf', 'kubernetes') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
