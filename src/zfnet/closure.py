"""The import closure of a script inside ``zfnet``: which of the package's source files it can run.

Static analysis (``ast``) of every ``import`` and ``from ... import``, including those inside functions,
resolved to files under ``src/zfnet`` (a package's ``__init__.py`` counts: importing a submodule runs it).
It backs two things that must agree with what a stage really runs: the test that every DVC stage's
``deps`` in ``dvc.yaml`` list its closure, and the code part of a training run's fingerprint (a finished
run is resumed only by the same configuration *and* code).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def _module_file(name: str) -> Path | None:
    """``zfnet.a.b`` -> ``src/zfnet/a/b.py`` or ``src/zfnet/a/b/__init__.py``; None outside the package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str | None:
    try:
        rel = path.resolve().relative_to(PACKAGE_DIR.parent)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module name ``path`` imports (``from a import b`` yields ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _module_name(path) or ""
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_closure(*scripts: str | Path) -> set[Path]:
    """The package files that ``scripts`` (entry points or modules) import, directly or not; the scripts
    themselves are included when they lie inside the package."""
    todo = [Path(s).resolve() for s in scripts]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    todo.append(found)
    return {p for p in seen if PACKAGE_DIR in p.parents or p.parent == PACKAGE_DIR}


def source_digest(paths: Iterable[str | Path]) -> str:
    """sha1 over the files' package-relative names and bytes: changes whenever any of their code does."""
    digest = hashlib.sha1()
    for path in sorted(Path(p).resolve() for p in paths):
        digest.update(str(path.relative_to(PACKAGE_DIR.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
