"""The package table of docs/architecture.md, enforced: which package may import which.

Every ``import`` and ``from ... import`` in the library, at module level or inside a
function, is read with :mod:`ast`; a forbidden edge fails with the file and line.
"""

from __future__ import annotations

import ast

import pytest

from conftest import REPO_ROOT

SRC = REPO_ROOT / "src"

#: package -> packages it must never import (docs/architecture.md, "Who may import whom").
FORBIDDEN = {
    "simfish.fusion": ["simfish.errors", "simfish.config", "simfish.world", "simfish.vision",
                       "simfish.io", "simfish.wrappers", "simfish.tools", "simfish_rl"],
    "simfish.errors": ["simfish.config", "simfish.world", "simfish.vision", "simfish.io",
                       "simfish.wrappers", "simfish.tools", "simfish_rl"],
    "simfish.config": ["simfish.world", "simfish.vision", "simfish.io", "simfish.wrappers",
                       "simfish.tools", "simfish_rl"],
    "simfish.io": ["simfish.world", "simfish.wrappers", "simfish.tools", "simfish_rl"],
    "simfish.vision": ["simfish.world", "simfish.wrappers", "simfish.tools", "simfish_rl"],
    "simfish.world": ["simfish.wrappers", "simfish.tools", "simfish_rl"],
    "simfish.wrappers": ["simfish.tools", "simfish_rl"],
    "simfish_rl": ["simfish.tools"],
}

def _module_name(path):
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path):
    """(line, imported module) for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:  # "from simfish import world" imports simfish.world
                yield node.lineno, f"{node.module}.{alias.name}"


def _within(name, package):
    return name == package or name.startswith(package + ".")


def _rule_for(module):
    """The most specific FORBIDDEN entry that covers ``module``."""
    owners = [p for p in FORBIDDEN if _within(module, p)]
    return max(owners, key=len) if owners else None


LIBRARY_FILES = sorted(p for p in SRC.rglob("*.py") if "egg-info" not in str(p))


def test_the_library_has_files():
    assert len(LIBRARY_FILES) > 30


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_package_table(path):
    module = _module_name(path)
    rule = _rule_for(module)
    if rule is None:
        return
    bad = []
    for line, imported in _imports(path):
        for banned in FORBIDDEN[rule]:
            if _within(imported, banned):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {imported} ({rule} must not)")
    assert not bad, "\n".join(bad)


def test_the_rules_can_fail():
    """A forbidden edge is detected (guards the checker itself)."""
    assert _rule_for("simfish.world.physics") == "simfish.world"
    assert any(_within("simfish_rl.training", b) for b in FORBIDDEN["simfish.world"])
    assert not any(_within("simfish.world.env", b) for b in FORBIDDEN["simfish_rl"])
