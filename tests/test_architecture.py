"""The architecture page's picture and the import rules can't drift from the package.

docs/_static/architecture.svg names every room (each subpackage and top-level module
of ``bounce_tracker``) in a ``data-room`` attribute: a new room fails here until the
picture shows it. The import-linter contracts in pyproject.toml name rooms, not the
modules inside them; the classifier's contract lists the core's modules one by one
(all but ``core.kinds``), so a new core module fails here until it is listed. And each
contract is shown to fail on a copy of the package with one forbidden import added,
so a contract that checks nothing can't pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bounce_tracker"
PICTURE = ROOT / "docs" / "_static" / "architecture.svg"
PAGE = ROOT / "docs" / "architecture.rst"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def modules_in(directory: Path) -> set[str]:
    """The modules and subpackages directly inside ``directory``, by name."""
    names = set()
    for path in directory.iterdir():
        if path.is_dir() and (path / "__init__.py").is_file():
            names.add(path.name)
        elif path.suffix == ".py" and path.name != "__init__.py":
            names.add(path.stem)
    return names


def importlinter_config() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["tool"]["importlinter"]


def contracts() -> dict[str, dict]:
    return {contract["id"]: contract for contract in importlinter_config()["contracts"]}


def test_the_picture_names_every_room_of_the_package_and_no_other():
    pictured = [
        element.get("data-room")
        for element in ET.parse(PICTURE).iter()
        if element.get("data-room") is not None
    ]
    assert len(pictured) == len(set(pictured)), "a room is drawn twice"
    assert set(pictured) == modules_in(PACKAGE)


def test_the_architecture_page_shows_the_picture():
    assert "_static/architecture.svg" in PAGE.read_text(encoding="utf-8")


def test_the_classifier_contract_forbids_django_and_every_other_module_of_the_app():
    rooms = modules_in(PACKAGE) - {"classify", "core"}
    core_modules = modules_in(PACKAGE / "core") - {"kinds"}
    expected = (
        {"django"}
        | {f"bounce_tracker.{room}" for room in rooms}
        | {f"bounce_tracker.core.{module}" for module in core_modules}
    )
    forbidden = contracts()["classify-pure"]["forbidden_modules"]
    assert len(forbidden) == len(set(forbidden))
    assert set(forbidden) == expected


def test_imports_under_type_checking_count():
    # A type-only import still ties one room's code to another's; a type two rooms
    # share belongs in the core (like core.kinds.Classification).
    assert importlinter_config().get("exclude_type_checking_imports", False) is False


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the package and pyproject.toml found in ``project``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=project,
        # Rich wraps the report at the terminal's width; one contract per line.
        env={**os.environ, "COLUMNS": "1000"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def broken_contracts(output: str) -> set[str]:
    names = {contract["name"]: contract_id for contract_id, contract in contracts().items()}
    return {
        names[line.removesuffix(" BROKEN")]
        for line in output.splitlines()
        if line in {f"{name} BROKEN" for name in names}
    }


def test_the_package_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert broken_contracts(result.stdout) == set()


# Added to a room's __init__.py, which stays put while modules move inside the room
# (or to core/kinds.py, which the classifier's contract names).
TYPE_CHECKING_IMPORT = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import {}\n"


@pytest.mark.parametrize(
    ("module", "added", "contract_id"),
    [
        ("sending/__init__.py", "import bounce_tracker.receiving", "rooms-independent"),
        ("receiving/__init__.py", "import bounce_tracker.sending", "rooms-independent"),
        ("ops/__init__.py", "import bounce_tracker.receiving", "rooms-independent"),
        (
            "receiving/__init__.py",
            TYPE_CHECKING_IMPORT.format("bounce_tracker.sending"),
            "rooms-independent",
        ),
        ("classify/__init__.py", "import django", "classify-pure"),
        ("classify/__init__.py", "import bounce_tracker.models", "classify-pure"),
        ("classify/__init__.py", "import bounce_tracker.core.settings", "classify-pure"),
        # Indirect: classify -> core.kinds -> django.
        ("core/kinds.py", "import django", "classify-pure"),
        ("core/__init__.py", "import bounce_tracker.sending", "core-imports-no-room"),
        ("core/__init__.py", "import bounce_tracker.classify", "core-imports-no-room"),
        ("sending/__init__.py", "import bounce_tracker.admin", "top-sits-on-top"),
        ("receiving/__init__.py", "import bounce_tracker.management", "top-sits-on-top"),
        ("admin/__init__.py", "import bounce_tracker.management", "admin-and-commands-apart"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, added, contract_id):
    shutil.copytree(
        PACKAGE, tmp_path / "bounce_tracker", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "bounce_tracker" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{added}\n", encoding="utf-8")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert contract_id in broken_contracts(result.stdout)
