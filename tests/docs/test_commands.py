"""Every `python -m pfl ...` command written in README.md, docs/ and experiments/ composes and validates.

Each command is put through the command line's own pre-check (`pfl.cli.precheck`: Hydra composes the
overrides, `pfl.config.validate` checks them; a multirun is checked on every combination of its swept
groups), in-process and without training. Read from fenced code blocks (`$ ` prompts, `\\` continuations
and shell variables set in the same block, `D="..."`, expanded) and from inline code spans. A command
whose next line in the block is `error: ...` is documented as failing: it must fail with that line.

Commands that cannot be checked as written are skipped, each for a reason: placeholders (`<run>`,
`...`, `DIR`, `NAME`) and an `init_from=` path that only a previous run creates.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pfl.cli import precheck

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "experiments").rglob("*.md")])
COMMAND = re.compile(r"(?:^|&& )(?:\$ )?(?:[A-Z_]+=\S+ )*python -m pfl(?=\s|$)(.*)")
INLINE = re.compile(r"`(?:[A-Z_]+=\S+ )*python -m pfl( [^`]*)?`")
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\bDIR\b|\bNAME\b|\bPATH\b")
VARIABLE = re.compile(r"^\s*([A-Z_][A-Z0-9_]*)=\"([^\"]*)\"\s*$")


def _blocks(text: str):
    """(first line number, lines) of each fenced or indented code block."""
    lines, block, start, fenced = text.splitlines(), [], 0, False
    for i, line in enumerate(lines + [""], 1):
        if line.strip().startswith("```"):
            if fenced:
                yield start, block
            fenced, block, start = not fenced, [], i + 1
        elif fenced:
            block.append(line)
        elif line.startswith("    ") and line.strip():
            block, start = (block, start) if block else ([], i)
            block.append(line)
        elif block and not fenced:
            yield start, block
            block = []


def commands(path: Path) -> list[tuple[str, str, str | None]]:
    """(where, the overrides after `python -m pfl`, the documented error line or None)."""
    text = path.read_text()
    out = []
    for start, block in _blocks(text):
        env: dict[str, str] = {}
        joined, where = [], []
        for n, line in enumerate(block):
            if joined and joined[-1][0].endswith("\\"):
                joined[-1] = (joined[-1][0][:-1] + " " + line.strip(), joined[-1][1])
            else:
                joined.append((line.strip(), start + n))
        for k, (line, lineno) in enumerate(joined):
            m = VARIABLE.match(line)
            if m:
                env[m.group(1)] = m.group(2)
                continue
            m = COMMAND.search(line)
            if not m:
                continue
            args = re.sub(r"\$(\w+)", lambda v: env.get(v.group(1), v.group(0)), m.group(1))
            nxt = joined[k + 1][0] if k + 1 < len(joined) else ""
            out.append((f"{path.relative_to(REPO)}:{lineno}", args, nxt if nxt.startswith("error:") else None))
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in INLINE.finditer(line):
            out.append((f"{path.relative_to(REPO)}:{lineno}", m.group(1) or "", None))
    return out


ALL = [c for p in DOCS for c in commands(p)]


def created(path: Path) -> set[str]:
    """`group=name` for each `conf/<group>/<name>.yaml` (new) the document tells the reader to write."""
    return {f"{g}={n}" for g, n in re.findall(r"conf/(\w+)/(\w+)\.yaml`? \(new\)", path.read_text())}


def _split(args: str) -> list[str]:
    return shlex.split(args, comments=True)


def test_commands_are_found():
    found = {where.split(":")[0] for where, _, _ in ALL}
    assert {"README.md", "experiments/jiang2019/README.md"} <= found and len(ALL) >= 40, (len(ALL), sorted(found))
    assert any("femnist_leaf" in args and "$" not in args for _, args, _ in ALL), "shell variables are expanded"


@pytest.mark.slow  # about 0.3 s of CPU per command
@pytest.mark.parametrize("where,args,error", ALL, ids=[f"{w} {a.strip()[:60]}" for w, a, _ in ALL])
def test_documented_command_validates(where, args, error):
    if PLACEHOLDER.search(args.split("#")[0]):
        pytest.skip("a placeholder stands for a value only the reader has")
    argv = _split(args)
    if any(a.startswith("init_from=") for a in argv):
        pytest.skip("init_from names a run an earlier command makes")
    made = created(REPO / where.split(":")[0])
    if any(a.lstrip("+") in made for a in argv):
        pytest.skip("an option the document has the reader create")
    problem = precheck(argv)
    if error is not None and "choose one of: " in error:  # a list that grows as options are added
        head, _, listed = error.partition("choose one of: ")
        assert problem is not None and problem.startswith(head), f"{where}: documented `{error}`, got `{problem}`"
        assert set(listed.split(", ")) <= set(problem.partition("choose one of: ")[2].split(", ")), problem
    elif error is not None:
        assert problem == error, f"{where}: documented `{error}`, the command says `{problem}`"
    else:
        assert problem is None, f"{where}: python -m pfl{args}\n  {problem}"
