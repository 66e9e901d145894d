"""Data flows one way: no module imports a later stage than its own.

Every import of every module (function-level and type-only ones included) is read
from the source with `ast`, so a new shortcut fails here, naming both modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import patchkeeper

ROOT = Path(patchkeeper.__file__).parent

# Each top-level module or subpackage of `patchkeeper`, by its place in the data flow.
# Shared bottom utilities come first: every stage may use them, they use no stage.
ORDER: tuple[tuple[str, ...], ...] = (
    ("patchkeeper", "errors", "ui", "boundary", "paths", "lowspeed", "markdown"),
    ("config",),
    ("upstream",),
    ("image",),
    ("containment",),
    ("chat_template",),  # the vanilla template a service's overlay carries
    ("patching",),
    ("overlay",),
    ("verify",),
    ("report", "timeline", "publish"),
    ("pipeline", "demo", "commands", "cli", "__main__"),
)
STAGE = {name: rank for rank, names in enumerate(ORDER) for name in names}

# (importer, imported): an import against the order, and why it is allowed.
ALLOWED = {
    # The commit-graph algorithm of stage 4 holds no state and imports nothing: the git
    # resolver, which owns the graph, asks it which merges each image commit contains.
    ("patchkeeper.upstream.git_resolver", "patchkeeper.containment"),
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _stage(module: str) -> str:
    """`patchkeeper.overlay.lock` -> `overlay`; the package itself is `patchkeeper`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(module: str, path: Path) -> Iterator[str]:
    """The patchkeeper modules `module` imports (a `from X import name` names X.name
    when that is a module, else X)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                name = f"{base}.{alias.name}"
                below = ROOT.parent / name.replace(".", "/")
                is_module = below.with_suffix(".py").is_file() or below.is_dir()
                yield name if is_module else base


def test_every_module_has_a_stage() -> None:
    unplaced = {_stage(module) for module, _ in _modules()} - STAGE.keys()
    assert not unplaced, f"place these in ORDER (tests/test_stages.py): {sorted(unplaced)}"


def test_no_stage_imports_a_later_one() -> None:
    backwards = set()
    for module, path in _modules():
        for imported in _imports(module, path):
            if imported.split(".")[0] != "patchkeeper" or (module, imported) in ALLOWED:
                continue
            if STAGE[_stage(imported)] > STAGE[_stage(module)]:
                backwards.add(f"{module} imports {imported}")
    assert not backwards, "a stage imports a later one:\n" + "\n".join(sorted(backwards))


def test_every_allowed_exception_is_still_needed() -> None:
    """An exception no import uses any more is removed, so the list stays the truth."""
    found = {(m, i) for m, path in _modules() for i in _imports(m, path)}
    assert not ALLOWED - found, ALLOWED - found


def test_test_modules_share_helpers_through_support_modules_only() -> None:
    """A test module imports no other test module: what tests share lives in support
    modules (builders, servers, fixtures), so moving or deleting a test breaks no other."""
    tests = Path(__file__).parent
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [
                f"{path.relative_to(tests)} imports {name}"
                for name in names
                if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")
            ]
    assert found == []
