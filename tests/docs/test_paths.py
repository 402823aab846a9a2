"""Every repo path, module and config option named in the docs exists.

Checked in README.md, docs/**/*.md and experiments/**/*.md (prose, backticks and code blocks):

- markdown links to relative targets, resolved from the linking file;
- path-like tokens that start with a top-level entry of the repo (`pfl/...`, `conf/...`, `tests/`),
  or that name a `.py` / `.md` / `.yaml` file under some folder (`benchmarks/engine_round.py`), or a bare
  `NAME.md` (resolved from the repo root or the linking file); globs (`conf/experiment/*.yaml`) and
  braces (`{train,test}`) must match at least one file;
- `python -m pfl.x.y` modules;
- config choices `group=name` for the groups in conf/ and `+sweep=name` (sweeps/).

Not checked: absolute paths, `~`, `../` (outside the repo), URLs, placeholders (`<run>`, `$VAR`) and
run outputs (`outputs/`, `multirun/`). A file the reader is told to create is marked `(new)` right after
its path (`conf/algorithm/fedprox.yaml` (new)) or names a fenced block's content (```yaml file=PATH);
such a file's path and option name are then allowed in that document, and so is a wrong choice the document shows failing (`error: algorithm=nope is not an option ...`).
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = ("outputs/", "multirun/", "wandb/", ".venv/")
PATH = re.compile(r"(?<![\w./~$<>-])((?:[\w.-]+/)+[\w.*{},-]*|[\w-]+\.md)(?![\w/])")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MODULE = re.compile(r"python -m (pfl(?:\.\w+)*)")
OPTION = re.compile(r"(?<![\w./+-])(\+?)(\w+)=([\w][\w,]*)")
NEW = re.compile(r"`?\s*\(new\b")
FILE_FENCE = re.compile(r"```\w+ file=")  # a code block the reader writes to that path (docs/extending.md)


def documents() -> list[Path]:
    docs = [REPO / "README.md"]
    for folder in ("docs", "experiments"):
        docs += sorted((REPO / folder).rglob("*.md"))
    return [d for d in docs if d.is_file()]


def _expand(path: str) -> list[str]:
    """`a/{b,c}.h5` -> [`a/b.h5`, `a/c.h5`]."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in product(*choices)]


def _exists(path: str, base: Path) -> bool:
    path = path.rstrip("/").removeprefix("./") or "."
    for p in _expand(path):
        for root in (REPO, base):
            if "*" in p:
                if any(root.glob(p)):
                    break
            elif (root / p).exists():
                break
        else:
            return False
    return True


def _groups() -> dict[str, set[str]]:
    out = {d.name: {p.stem for p in d.glob("*.yaml")} for d in (REPO / "conf").iterdir() if d.is_dir()}
    out["sweep"] = {p.stem for p in (REPO / "sweeps").glob("*.yaml")}
    return out


def dead_references(doc: Path, text: str) -> list[str]:
    """The repo paths, modules and options named in `text` (the content of `doc`) that do not exist."""
    top = {p.name for p in REPO.iterdir() if not p.name.startswith(".")}
    base = doc.parent
    dead, new = [], set()
    for m in LINK.finditer(text):
        target = m.group(1).split("#")[0]
        if target and not re.match(r"^[a-z]+:", target) and not (base / target).exists():
            dead.append(target)
    for m in PATH.finditer(text):
        path = m.group(1).rstrip(".,;:")
        if NEW.match(text, m.end()) or FILE_FENCE.fullmatch(text, text.rfind("\n", 0, m.start()) + 1, m.start()):
            new.add(path)
            continue
        if path.startswith(RUNTIME):
            continue
        first = path.split("/")[0]
        is_file = re.search(r"\.(py|md|yaml|toml)$", path) is not None
        if "/" not in path or first in top or is_file:
            if "/" not in path and not path.endswith(".md"):
                continue
            if not _exists(path, base):
                dead.append(path)
    for m in MODULE.finditer(text):
        mod = m.group(1).replace(".", "/")
        if not ((REPO / f"{mod}.py").is_file() or (REPO / mod / "__init__.py").is_file()):
            dead.append(f"python -m {m.group(1)}")
    groups = _groups()
    for path in new:  # options the document tells the reader to create
        folder, _, name = path.rpartition("/")
        group = "sweep" if folder == "sweeps" else folder.removeprefix("conf/")
        groups.setdefault(group, set()).add(Path(name).stem)
    shown_wrong = set(re.findall(r"error: (\+?\w+=\w+) is not an option", text))  # a documented error
    for m in OPTION.finditer(text):
        plus, group, values = m.groups()
        if m.group(0) in shown_wrong:
            continue
        if group not in groups or (group == "sweep" and not plus):
            continue
        for value in values.split(","):
            if value and value != "null" and value not in groups[group]:
                dead.append(f"{plus}{group}={value}")
    return list(dict.fromkeys(d for d in dead if d not in new))  # a file the document creates, named again


def test_the_documents_exist():
    names = {d.relative_to(REPO).as_posix() for d in documents()}
    assert {"README.md", "docs/architecture.md", "docs/extending.md"} <= names, names


@pytest.mark.parametrize("doc", documents(), ids=lambda d: d.relative_to(REPO).as_posix())
def test_no_dead_references(doc):
    assert dead_references(doc, doc.read_text()) == []


def test_the_checker_catches_dead_references():
    """The three dead references the old README and docstrings had, plus the other kinds."""
    text = (
        "Choices also in docs/README_paper2.md (see DESIGN.md), measured in `benchmarks/engine_round.py`.\n"
        "[link](docs/nothing.md) `conf/algorithm/nope.yaml` `python -m pfl.nope` `algorithm=nope` "
        "`+sweep=nope` `conf/experiment/*.nope`\n"
        "Fine: `conf/algorithm/fedavg.yaml` [readme](README.md) `python -m pfl` `outputs/<run>/summary.json` "
        "`../shared/data` `~/.cache/pfl` `algorithm=fedavg,reptile` `conf/algorithm/mine.yaml` (new) "
        "`algorithm=mine` `metrics.csv` `conf/experiment/*.yaml` `heldout/pers_acc_5`\n"
        "$ python -m pfl dataset=nope\nerror: dataset=nope is not an option; choose one of: ...\n"
    )
    assert dead_references(REPO / "README.md", text) == [
        "docs/nothing.md", "docs/README_paper2.md", "DESIGN.md", "benchmarks/engine_round.py",
        "conf/algorithm/nope.yaml", "conf/experiment/*.nope", "python -m pfl.nope",
        "algorithm=nope", "+sweep=nope",
    ]
