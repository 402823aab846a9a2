"""Short sweep log lines: `#3 lr=0.0591 local_epochs=11` instead of a trial job's every override.

Hydra's launchers log each job's overrides in full (pfl's internal `++sweep=...`,
`hydra.sweep.subdir=...`, learning rates to 17 digits); while a sweep runs, a
filter on their loggers keeps only the searched parameters, by their last name
(the full key where two would read the same), with 3 significant digits.
"""

from __future__ import annotations

import contextlib
import logging
import re

LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher._core",
                    "hydra_plugins.hydra_submitit_launcher.submitit_launcher")
JOB_LINE = re.compile(r"^\s*#(\d+) : (.*)$", re.S)
OVERRIDE = re.compile(r"(?:^|\s)\+*([\w./-]+)=(\S+)")


def short_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, str):
        try:
            return short_value(int(v))
        except ValueError:
            try:
                return short_value(float(v))
            except ValueError:
                return v.strip("'\"")
    return str(v)


def short_params(params: dict) -> str:
    """`lr=0.0591 local_epochs=11` (keys by their last part unless two share it)."""
    last = [k.rsplit(".", 1)[-1] for k in params]
    names = {k: (n if last.count(n) == 1 else k) for k, n in zip(params, last)}
    return " ".join(f"{names[k]}={short_value(v)}" for k, v in params.items())


class ShortJobLines(logging.Filter):
    def __init__(self, keys: set[str]):
        super().__init__()
        self.keys = keys

    def filter(self, record: logging.LogRecord) -> bool:
        m = JOB_LINE.match(record.getMessage())
        if m:
            params = {k: v for k, v in OVERRIDE.findall(m.group(2)) if k in self.keys}
            record.msg, record.args = f"#{m.group(1)} {short_params(params)}", ()
        return True


@contextlib.contextmanager
def short_job_lines(keys):
    """While a sweep runs: the launchers' per-job lines show only the searched `keys`."""
    f = ShortJobLines(set(keys))
    loggers = [logging.getLogger(name) for name in LAUNCHER_LOGGERS]
    for lg in loggers:
        lg.addFilter(f)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(f)
