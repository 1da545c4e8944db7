"""What the wheel installs, and what the runtime imports. Fast: no server, no build.

- pyproject's package discovery finds ``synckairos`` and its subpackages only
  (never ``benchmarks`` or ``tests``), and every folder of the package that
  holds Python code is a package it finds (a folder without ``__init__.py``
  would silently fall out of the wheel).
- Every file of the package that is not Python is shipped by a package-data
  pattern, and every pattern ships something (a moved Lua script or migration
  must move its pattern too).
- No runtime module imports the development stack (``synckairos.dev``), the
  benchmarks or the tests: ``serve`` and ``worker`` never load them.
- ``synckairos bench`` finds the harness of its checkout from any directory
  (the package installed editable, as ``scripts/run.sh`` does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "synckairos"


def _setuptools_config() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        config: dict[str, Any] = tomllib.load(file)["tool"]["setuptools"]
    return config


def _discovered() -> list[str]:
    """The packages ``[tool.setuptools.packages.find]`` selects, by setuptools' rule.

    ``find_packages`` walks the tree from ``where``, a folder being a package
    when it holds ``__init__.py`` (it never descends into one that is not),
    and keeps the dotted names that match an ``include`` pattern and no
    ``exclude`` pattern (``fnmatchcase``). Written out here so the test needs
    no setuptools in the environment.
    """
    find = _setuptools_config()["packages"]["find"]
    where = ROOT / find.get("where", ["."])[0]
    include = find.get("include", ["*"])
    exclude = find.get("exclude", [])

    def walk(folder: Path, prefix: str) -> Iterator[str]:
        for child in sorted(folder.iterdir()):
            if child.is_dir() and "." not in child.name and (child / "__init__.py").is_file():
                name = prefix + child.name
                yield name
                yield from walk(child, name + ".")

    return [
        name
        for name in walk(where, "")
        if any(fnmatchcase(name, pattern) for pattern in include)
        and not any(fnmatchcase(name, pattern) for pattern in exclude)
    ]


def _package_files() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_the_wheel_installs_synckairos_only() -> None:
    packages = _discovered()
    assert "synckairos" in packages and "synckairos.dev" in packages
    strangers = [name for name in packages if name.split(".")[0] != "synckairos"]
    assert not strangers, f"the wheel would install {strangers}"


def test_every_folder_with_python_code_is_a_package() -> None:
    packages = set(_discovered())
    folders = {path.parent for path in _package_files() if path.suffix == ".py"}
    missing = sorted(
        ".".join(folder.relative_to(ROOT).parts)
        for folder in folders
        if ".".join(folder.relative_to(ROOT).parts) not in packages
    )
    assert not missing, f"folders left out of the wheel (no __init__.py?): {missing}"


def test_every_data_file_is_shipped_and_every_pattern_ships_something() -> None:
    patterns: dict[str, list[str]] = _setuptools_config()["package-data"]
    shipped: set[Path] = set()
    empty: list[str] = []
    for package, globs in patterns.items():
        base = ROOT.joinpath(*package.split("."))
        for pattern in globs:
            found = {path for path in base.glob(pattern) if path.is_file()}
            if not found:
                empty.append(f"{package}: {pattern}")
            shipped |= found
    assert not empty, f"package-data patterns that match nothing: {empty}"
    data = [path for path in _package_files() if path.suffix != ".py"]
    assert any(path.suffix == ".lua" for path in data)
    unshipped = [str(path.relative_to(ROOT)) for path in data if path not in shipped]
    assert not unshipped, f"files of the package no package-data pattern ships: {unshipped}"


_IMPORT_EVERYTHING = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
loaded = sorted(
    name for name in sys.modules
    if name.startswith(("synckairos.dev", "benchmarks", "tests"))
)
print(" ".join(loaded))
"""


def _runtime_modules() -> list[str]:
    """Every module of the package but ``synckairos.dev`` and ``__main__``."""
    names = []
    for path in _package_files():
        if path.suffix != ".py":
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name != "synckairos.__main__" and not name.startswith("synckairos.dev"):
            names.append(name)
    return names


def test_no_runtime_module_imports_the_dev_stack_benchmarks_or_tests(tmp_path: Path) -> None:
    """Every module but ``synckairos.dev``, imported in a fresh interpreter."""
    modules = _runtime_modules()
    assert "synckairos.cli" in modules and "synckairos.app" in modules
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING, *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"runtime modules import: {done.stdout.strip()}"


def test_synckairos_bench_finds_the_harness_from_another_directory(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "synckairos", "bench", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "synckairos bench" in done.stdout
