"""Shared pieces of the property-based fault suite: the real entry point run in this process, the
property every outcome must have, and generators of damaged data files."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

ALLOWED_STATUS = {0, 2, 3}
TRIED: dict[str, int] = {}  # property name -> generated cases run (reported by the soak)


def run_main(args: list[str]) -> tuple[int, str, str]:
    """`python -m pfl ARGS` as pfl.cli.main in this process: (status, stdout, stderr)."""
    from pfl.cli import main

    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["pfl", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def check_outcome(name: str, code: int, out: str, err: str) -> None:
    """The property: a status in {0, 2, 3}, no traceback, and a failure told in at most 3 lines."""
    TRIED[name] = TRIED.get(name, 0) + 1
    text = out + err
    assert code in ALLOWED_STATUS, f"status {code}: {text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    if code != 0:
        lines = [ln for ln in re.split(r"[\r\n]", text) if ln.strip()]
        assert len(lines) <= 3, text[-3000:]
        assert any(ln.startswith("error:") for ln in lines), text[-3000:]


def hashes(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


# -- generated values ------------------------------------------------------------------------
NUMBERS = st.one_of(st.integers(), st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0x10", "1_000", "''", "null", "true"]))


def cli_value(v) -> str:
    return v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)


JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=5), st.lists(st.integers(-2, 70), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                                           st.integers(), max_size=2))


def leaf_users(n_users: int = 6, n: int = 6, width: int = 784, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {f"u{i}": {"x": rng.random((n, width)).round(2).tolist(), "y": rng.integers(0, 62, n).tolist()}
            for i in range(n_users)}


@st.composite
def leaf_damage(draw):
    """(description, damage(train_users, test_users) -> None, truncate fraction or None)."""
    kind = draw(st.sampled_from(["label", "feature", "empty-client", "all-empty", "short-y", "row-width",
                                 "x-not-list", "truncate", "drop-user"]))
    user = f"u{draw(st.integers(0, 5))}"
    row = draw(st.integers(0, 5))
    split = draw(st.sampled_from(["train", "test"]))
    junk = draw(JUNK)
    width = draw(st.integers(0, 1000))
    frac = draw(st.floats(0, 1)) if kind == "truncate" else None

    def damage(users: dict[str, dict]) -> None:
        d = users[split]
        if kind == "label":
            d[user]["y"][row] = junk
        elif kind == "feature":
            d[user]["x"][row][draw_col] = junk
        elif kind == "empty-client":
            d[user]["x"], d[user]["y"] = [], []
        elif kind == "all-empty":
            for u in d.values():
                u["x"], u["y"] = [], []
        elif kind == "short-y":
            d[user]["y"] = d[user]["y"][:row]
        elif kind == "row-width":
            d[user]["x"][row] = d[user]["x"][row][:width] + [0.5] * max(0, width - 784)
        elif kind == "x-not-list":
            d[user]["x"] = junk
        elif kind == "drop-user":
            del d[user]

    draw_col = draw(st.integers(0, 783))
    return f"{kind} {split} {user} row {row} {junk!r}"[:120], damage, frac


def write_leaf(root: Path, damage, frac) -> None:
    users = {"train": leaf_users(seed=0), "test": leaf_users(seed=1)}
    damage(users)
    for split, d in users.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        text = json.dumps({"users": sorted(d), "num_samples": [len(u["y"]) if isinstance(u.get("y"), list) else 0
                                                               for u in d.values()], "user_data": d})
        if frac is not None and split == "train":
            text = text[: int(len(text) * frac)]
        (root / split / "all.json").write_text(text)


@st.composite
def h5_damage(draw):
    """(description, pixels/labels per client per split, truncate fraction or None) for fed_emnist h5 files."""
    kind = draw(st.sampled_from(["label", "label-dtype", "pixel", "pixel-shape", "empty-client", "all-empty",
                                 "short-labels", "truncate"]))
    split = draw(st.sampled_from(["train", "test"]))
    client = draw(st.integers(0, 3))
    row = draw(st.integers(0, 4))
    label = draw(st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-2, 70)))
    pixel = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([np.nan, np.inf])))
    frac = draw(st.floats(0, 1)) if kind == "truncate" else None
    return f"{kind} {split} client {client} row {row} label {label} pixel {pixel}", (kind, split, client, row, label,
                                                                                     pixel), frac


def write_h5(root: Path, spec, frac) -> None:
    import h5py

    kind, split_d, client, row, label, pixel = spec
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        path = root / f"fed_emnist_{split}.h5"
        with h5py.File(path, "w") as f:
            for c in range(4):
                px = rng.random((5, 28, 28)).astype(np.float32)
                lb = rng.integers(0, 62, 5).astype(np.int32)
                if split == split_d and (c == client or kind == "all-empty"):
                    if kind == "label":
                        lb = lb.astype(np.int64)
                        lb[row] = label
                    elif kind == "label-dtype":
                        lb = lb.astype(np.float32)
                        lb[row] = pixel
                    elif kind == "pixel":
                        px[row, 3, 3] = pixel
                    elif kind == "pixel-shape":
                        px = px[:, :14, :]
                    elif kind in ("empty-client", "all-empty"):
                        px, lb = px[:0], lb[:0]
                    elif kind == "short-labels":
                        lb = lb[:row]
                f.create_dataset(f"examples/c{c}/pixels", data=px)
                f.create_dataset(f"examples/c{c}/label", data=lb)
        if frac is not None and split == split_d:
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * frac)])
