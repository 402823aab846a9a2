"""Plain files in the run directory, written atomically.

`metrics.csv` (one row per round, step = round; evaluation columns filled at
evaluation rounds) is a Lightning logger, so it receives exactly what W&B
receives (names: pfl.engine.names). A row with the columns of the file so far
is appended (one write); a row with new columns rewrites the file through a
temporary file and `os.replace`. A kill can only cut the row being written,
which belongs to a round past the last checkpoint: a resumed run drops rows
past its checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def kept_rows(path: Path, resume_round: int) -> list[dict]:
    """The rows of metrics.csv up to `resume_round`, without damaged ones: a row with another number of
    fields than the header, an unreadable round, NUL bytes, or a last line cut before its line end (what a
    power loss leaves). Dropped damaged rows are counted in one warning."""
    import logging

    text = Path(path).read_bytes().decode("utf-8", errors="replace")
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text))
    try:
        rows.extend(reader)
    except csv.Error:  # an unreadable line: it and what follows count as damaged
        rows.append([])
    header, body = (rows[0], rows[1:]) if rows else ([], [])
    cut = bool(text) and not text.endswith("\n")
    kept, damaged = [], 0 if "round" in header or not rows else 1  # an unreadable header counts too
    for i, row in enumerate(body):
        rnd = _round(row, header)
        if rnd is None or len(row) != len(header) or any("\0" in v or "\ufffd" in v for v in row) or \
                (cut and i == len(body) - 1):
            damaged += 1
        elif rnd <= resume_round:
            kept.append(dict(zip(header, row)))
    if damaged:
        logging.getLogger("pfl").warning("%s: dropped %d damaged row(s) (a cut or garbled line, e.g. after a power "
                                         "loss); kept %d row(s) up to round %d", path, damaged, len(kept), resume_round)
    return kept


def _round(row: list[str], header: list[str]) -> int | None:
    try:
        return int(float(row[header.index("round")]))
    except (ValueError, IndexError, OverflowError):
        return None


class MetricsCSV(Logger):
    """metrics.csv in the run directory: one row per logged round."""

    def __init__(self, run_dir: str | os.PathLike, resume_round: int | None = None):
        super().__init__()
        self.path = Path(run_dir) / "metrics.csv"
        self.rows: list[dict] = []
        self._keys: list[str] = []
        if rank_zero_only.rank != 0:  # one process writes the run's files
            return
        if self.path.exists() and resume_round is not None:
            self.rows = kept_rows(self.path, resume_round)
            self._flush()
        elif self.path.exists():
            self.path.unlink()

    @property
    def name(self) -> str:
        return "metrics_csv"

    @property
    def version(self) -> str:
        return "0"

    @property
    @rank_zero_experiment
    def experiment(self):
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        row = {"round": step, **{k: v for k, v in metrics.items() if k != "round"}}
        self.rows.append(row)
        if self._keys and all(k in self._keys for k in row) and self.path.is_file():
            buf = io.StringIO()
            csv.DictWriter(buf, fieldnames=self._keys).writerow(row)
            with open(self.path, "a", newline="") as f:
                f.write(buf.getvalue())
            return
        self._flush()

    def _flush(self) -> None:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())
        self._keys = keys
