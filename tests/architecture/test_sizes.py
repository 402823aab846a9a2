"""Small files and short functions: no file under pfl/ over 400 lines, no function over 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PFL = Path(__file__).resolve().parents[2] / "pfl"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60
#: path under pfl/ -> why it is still over (empty: none)
KNOWN_LONG: dict[str, str] = {}


def long_files(root: Path) -> list[str]:
    return [f"{p.relative_to(root)}: {n} lines" for p in sorted(root.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES and str(p.relative_to(root)) not in KNOWN_LONG]


def long_functions(root: Path) -> list[str]:
    out = []
    for p in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and f"{p.relative_to(root)}:{node.name}" not in KNOWN_LONG:
                    out.append(f"{p.relative_to(root)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_no_file_over_400_lines():
    assert not long_files(PFL), "split these (or list one in KNOWN_LONG with the reason):\n" + "\n".join(long_files(PFL))


def test_no_function_over_60_lines():
    found = long_functions(PFL)
    assert not found, "split these (or list one in KNOWN_LONG with the reason):\n" + "\n".join(found)


def test_the_limits_are_measured(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n" + "\n" * MAX_FILE_LINES)
    assert long_functions(tmp_path) == [f"long.py:1 f: {MAX_FUNCTION_LINES + 1} lines"]
    assert long_files(tmp_path) == [f"long.py: {MAX_FILE_LINES + MAX_FUNCTION_LINES + 1} lines"]
