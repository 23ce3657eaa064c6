"""leaddb's statements are built from SQLAlchemy Core constructs, not written as text: a builder
module under leaddb/sql or leaddb/scoring that holds a hand-written statement (a string or an
f-string starting with SELECT, INSERT, UPDATE, DELETE or WITH) or a hand-numbered ``$n``
placeholder fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import leaddb

PACKAGE = Path(leaddb.__file__).parent
BUILDER_MODULES = sorted(
    path.relative_to(PACKAGE.parent).as_posix()
    for folder in ("sql", "scoring")
    for path in (PACKAGE / folder).glob("*.py")
)

# Builders that still write text SQL, each with the reason it stays (none today). A function
# listed here that holds no text SQL any more fails the test below, so the list only shrinks.
STILL_TEXT: set[tuple[str, str]] = set()

STATEMENT = re.compile(r"^\s*\(?\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\s", re.IGNORECASE)
PLACEHOLDER = re.compile(r"\$\d")


def _text_sql(source: str) -> dict[str, list[int]]:
    """Lines of hand-written SQL per enclosing function (``Class.method``; ``<module>``)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: dict[str, list[int]] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = child.name if scope == "<module>" else f"{scope}.{child.name}"
            if id(child) not in docstrings and _is_sql(child):
                found.setdefault(inner, []).append(getattr(child, "lineno", 0))
            if isinstance(child, ast.JoinedStr):
                # Its literal parts were judged with it: only the values inside go on.
                for part in child.values:
                    if isinstance(part, ast.FormattedValue):
                        visit(part, inner)
                continue
            visit(child, inner)

    visit(tree, "<module>")
    return found


def _is_sql(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(STATEMENT.match(node.value) or PLACEHOLDER.search(node.value))
    if isinstance(node, ast.JoinedStr):
        parts = node.values
        head = parts[0] if parts else None
        if isinstance(head, ast.Constant) and STATEMENT.match(str(head.value)):
            return True
        # An f-string that numbers a placeholder itself: "...$" followed by a value.
        return any(
            isinstance(part, ast.Constant) and str(part.value).endswith("$") for part in parts[:-1]
        )
    return False


def test_the_scanner_finds_text_sql() -> None:
    found = _text_sql(
        'def f(n):\n    """UPDATE the rows (a docstring)."""\n'
        '    a = f"SELECT x FROM t WHERE id = ${n}"\n'
        '    b = "  with w AS (DELETE FROM t) SELECT 1"\n'
        '    return f"x = ${n}"\n'
    )
    assert found == {"f": [3, 4, 5]}


@pytest.mark.parametrize("module", BUILDER_MODULES)
def test_builder_modules_hold_no_hand_written_sql(module: str) -> None:
    found = _text_sql((PACKAGE.parent / module).read_text())
    unexpected = {
        scope: lines for scope, lines in found.items() if (module, scope) not in STILL_TEXT
    }
    assert unexpected == {}, f"{module} writes SQL by hand in {unexpected}"
    for listed_module, scope in STILL_TEXT:
        if listed_module == module:
            assert scope in found, f"{module}:{scope} is converted: take it off STILL_TEXT"
