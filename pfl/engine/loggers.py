"""Loggers for a run: metrics.csv always, plus every selected `logger` option's `_target_`.

`logger=wandb`, `logger=tensorboard`, `logger=mlflow`, or several at once: `logger=[csv,wandb,tensorboard]`
(each option puts its node under its own key: logger.wandb, logger.tensorboard, ...). A target is called with
the settings of its YAML and, where its signature names them, `run` (pfl.engine.experiment.RunInfo), `run_dir`, `resume_round` and `save_dir`
(a Lightning logger's folder: <run dir>/<option>, e.g. <run dir>/tensorboard). Loggers other than pfl's own
receive the resolved config as hyperparameters."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pfl.engine.experiment import RunInfo
from pfl.engine.files import MetricsCSV

log = logging.getLogger("pfl")


PROBE_TIMEOUT_S = 10.0  # how long an online W&B run waits to learn that the server cannot be reached


def wandb_mode(requested: str) -> str:
    """auto: WANDB_MODE if set, else online only when an API key is configured, else offline (never blocks).
    An online mode whose server (WANDB_BASE_URL, else api.wandb.ai) cannot be reached within
    PROBE_TIMEOUT_S falls back to offline with one warning (`wandb sync` uploads the run later)."""
    mode = _wanted_mode(requested)
    if mode == "online":
        problem = _unreachable(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai", PROBE_TIMEOUT_S)
        if problem:
            log.warning("W&B server unreachable (%s): logging offline instead; upload later with `wandb sync`", problem)
            os.environ["WANDB_MODE"] = "offline"  # wandb reads it too
            return "offline"
    return mode


def _unreachable(url: str, timeout: float) -> str | None:
    """Why a TCP connection to url's host cannot be opened within `timeout` seconds (DNS included), or None."""
    import socket
    import threading
    from urllib.parse import urlparse

    u = urlparse(url)
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    result: list = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"{host}:{port}: {exc.strerror or exc}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else f"{host}:{port}: no answer within {timeout:.0f} s"


def _wanted_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def make_loggers(factories, run: RunInfo, run_dir: Path, resume_round: int | None) -> list:
    """metrics.csv, then one logger per factory (pfl.config.experiment builds them from `logger`)."""
    loggers = [MetricsCSV(run_dir, resume_round)]
    for make in factories:
        lg = make(run=run, run_dir=Path(run_dir), resume_round=resume_round)
        if not hasattr(lg, "log_summary"):  # a Lightning logger: the config as its hyperparameters
            lg.log_hyperparams(run.config)
        loggers.append(lg)
    return loggers
