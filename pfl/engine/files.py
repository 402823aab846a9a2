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
            with open(self.path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(float(r.get("round", 0))) <= resume_round]
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
