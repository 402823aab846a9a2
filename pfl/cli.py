"""`python -m pfl`: the Hydra application, with one-line errors for bad input.

Before Hydra runs, the command-line overrides are composed once with Hydra's
compose API; any problem (an unknown option of a group, a misspelt key, a value
of the wrong type or range) is reported as one line naming the key and what is
allowed, and the process exits with status 2, without a traceback.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
from pathlib import Path

from pfl.resources import CONF_DIR as _CONF, SWEEPS_DIR

CONF_DIR = str(_CONF)  # the configs: in the installed package, or conf/ of a checkout (pfl.resources)
log = logging.getLogger("pfl")


def _groups() -> dict[str, list[str]]:
    out = {}
    for d in sorted(Path(CONF_DIR).iterdir()):
        if d.is_dir():
            out[d.name] = sorted(p.stem for p in d.glob("*.yaml"))
    out["sweep"] = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))  # the `sweep` group (pfl.sweep.definitions)
    return out


def explain(exc: BaseException) -> str:
    """One line for a composition or validation error."""
    from pfl.config_errors import ConfigError

    if isinstance(exc, ConfigError):
        return f"error: {exc}"
    msg = str(exc)
    cause = exc.__cause__
    while cause is not None:  # Hydra wraps the informative error ("Error merging override ...")
        msg += "\n" + str(cause)
        cause = cause.__cause__
    m = re.search(r"Could not find '([\w/]+)/([^']+)'", msg)
    if m:
        group, value = m.group(1), m.group(2)
        opts = _groups().get(group, [])
        return f"error: {group}={value} is not an option; choose one of: {', '.join(opts)}"
    m = re.search(r"Could not override '([^']+)'", msg)
    if m or "not in struct" in msg:
        key = m.group(1) if m else re.search(r"Key '([^']+)'", msg).group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else None
        hint = f"keys of {parent} are listed by `python -m pfl --cfg job -p {parent}`" if parent else \
            "top-level keys are listed by `python -m pfl --cfg job`"
        return f"error: unknown setting '{key}' ({hint}; use +{key}=... to add a new key)"
    m = re.search(r"Value '([^']*)'.*could not be converted to (\w+)", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        kind = {"float": "a number", "integer": "an integer", "boolean": "true or false"}.get(m.group(2).lower(), m.group(2))
        return f"error: {key.group(1) if key else '?'}={m.group(1)} is not allowed: expected {kind}"
    if "is not a subclass of SweepSettings" in msg:
        return ("error: +sweep=NAME names no sweep definition; choose one of: " + ", ".join(_groups()["sweep"]))
    m = re.search(r"Value '([^']*)' is not a valid bool", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        return f"error: {key.group(1) if key else '?'}={m.group(1)} is not allowed: expected true or false"
    m = re.search(r"Invalid value assigned: (\w+) is not a ListConfig, list or tuple", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        return f"error: {key.group(1) if key else '?'} must be a list, e.g. [1,5]"
    first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(exc).__name__)
    return f"error: {first}"


MAX_PRECHECK_JOBS = 32


def _plain_overrides(args: list[str]) -> list[list[str]] | None:
    """The override lists to pre-check, or None when Hydra should handle argv alone.

    A multirun sweep is checked on every combination of the swept config
    groups (`algorithm=fedavg,reptile`: a setting that only one of them has is
    caught before any job runs) with the first value of every other swept key;
    Optuna search spaces (range/choice/interval/tag) are left to the sweeper.
    """
    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "--version") or
           a.startswith("--info") for a in args):
        return None
    groups = set(_groups())
    fixed, swept = [], []
    for a in args:
        if a.startswith("-"):
            continue
        name, _, value = a.partition("=")
        key = name.lstrip("+~")
        if key.startswith("hydra") or key.startswith("hydra/"):
            continue
        if re.match(r"^(range|choice|interval|tag|glob|sort|shuffle)\(", value):
            continue
        if "," in value and value[:1] not in ("[", "{", "'", '"'):
            values = value.split(",")
            if key in groups:
                swept.append([f"{name}={v}" for v in values])
                continue
            a = f"{name}={values[0]}"
        fixed.append(a)
    combos = [list(c) for c in itertools.product(*swept)][:MAX_PRECHECK_JOBS]
    return [fixed + c for c in combos]


def precheck(args: list[str]) -> str | None:
    """Compose the config with these overrides; return an error line or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pfl.config import register, validate

    jobs = _plain_overrides(args)
    if jobs is None:
        return None
    register()
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            for overrides in jobs:
                try:
                    validate(compose("config", overrides=overrides))
                except Exception as exc:  # noqa: BLE001 - every failure becomes one line
                    which = [o for o in overrides if o.partition("=")[0].lstrip("+~") in _groups()]
                    where = f" (in the sweep's job with {' '.join(which)})" if len(jobs) > 1 and which else ""
                    return explain(exc) + where
    finally:
        GlobalHydra.instance().clear()
    return None


def main() -> None:
    args = sys.argv[1:]
    problem = precheck(args)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    _hydra_main()


def _hydra_main() -> None:
    import hydra
    from omegaconf import DictConfig

    from pfl.config import register

    register()

    @hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
    def app(cfg: DictConfig):
        from pfl.config_errors import ConfigError
        from pfl.engine.summary import format_table
        from pfl.run import train

        if cfg.get("sweep") is not None:
            import pfl.sweep.pruning  # noqa: F401 - registers the pruning callback of sweep trials

            if not _multirun():
                log.warning("a single run with the sweep's defaults; to run the sweep: python -m pfl -m +sweep=%s",
                            cfg.sweep.name)
        try:
            summary = train(cfg)
        except ConfigError as exc:
            if _multirun():
                raise  # one failed job of a sweep; the sweeper records it and goes on
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        from pytorch_lightning.utilities import rank_zero_only

        if rank_zero_only.rank == 0:  # one process of a distributed run reports
            table = format_table(summary)
            print(table)
            _to_log_files(table)
        return objective(cfg, summary)

    app()


def _to_log_files(text: str) -> None:
    """`text` into the run's log files (pfl.log) too, not a second time on the console."""
    record = logging.LogRecord("pfl", logging.INFO, __file__, 0, "final results\n" + text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def objective(cfg, summary: dict):
    """The value(s) a sweep optimizes (None outside sweeps)."""
    from pfl import sweep_objective

    return sweep_objective.read(cfg, summary)
