"""`python -m pfl`: the Hydra application, with one-line errors for bad input.

Before Hydra runs, the command-line overrides are composed once with Hydra's
compose API; any problem (an unknown option of a group, a misspelt key, a value
of the wrong type or range) is reported as one line naming the key and what is
allowed, and the process exits with status 2, without a traceback.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from pathlib import Path

from pfl.config.resources import CONF_DIR as _CONF, SWEEPS_DIR

CONF_DIR = str(_CONF)  # the configs: in the installed package, or conf/ of a checkout (pfl.config.resources)
log = logging.getLogger("pfl")

from pfl.config.explain import _groups, _keys_of, explain, listing, trainer_key_line, unselected_group  # noqa: E402,F401 - one-line errors




MAX_PRECHECK_JOBS = 32


def _plain_overrides(args: list[str]) -> list[list[str]] | None:
    """The override lists to pre-check, or None when Hydra should handle argv alone.

    A multirun sweep is checked on every combination of the swept config
    groups (`algorithm=fedavg,reptile`: a setting that only one of them has is
    caught before any job runs) with the first value of every other swept key;
    Optuna search spaces (range/choice/interval/tag) are left to the sweeper.
    """
    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
                 "--version", "--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn") or
           a.startswith(("--info", "--config-dir=", "--config-path=", "--config-name=")) for a in args):
        return None  # (precheck takes --config-dir out first: config_dir_of)
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

    from pfl.config import stage_overrides
    from pfl.config.schema_cache import register

    user_dir, args = config_dir_of(args)
    jobs = _plain_overrides(args)
    if jobs is None:
        return None
    register()  # the schemas, from the cache when it has them: a composition error costs no torch import
    searched = [f"hydra.searchpath=[{Path(user_dir).resolve().as_uri()}]"] if user_dir else []
    dirs = [Path(user_dir).resolve()] if user_dir else []
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            def compose_with(name, overrides, **kwargs):  # the user's --config-dir searched too
                return compose(name, overrides=searched + list(overrides), **kwargs)

            composed = []
            for overrides in jobs:  # every job composes first ...
                try:
                    composed.append(compose_with("config", overrides))
                except Exception as exc:  # noqa: BLE001 - every failure becomes one line
                    return _job_error(exc, compose_with, overrides, len(jobs), dirs)
                ignored = stage_overrides.problem(overrides, composed[-1])  # rounds=3 beside a staged preset
                if ignored:
                    return ignored
            problem = _quick_values(jobs, composed, compose_with, dirs)  # from the cache: no torch
            if problem:
                return problem
            from pfl.config import validate  # ... then the values are checked (imports the targets)

            for overrides, cfg in zip(jobs, composed):
                try:
                    validate(cfg)
                except Exception as exc:  # noqa: BLE001 - every failure becomes one line
                    return _job_error(exc, compose_with, overrides, len(jobs), dirs)
    finally:
        GlobalHydra.instance().clear()
    return None


def _quick_values(jobs, composed, compose_with, dirs) -> str | None:
    """The first value refused by a rule the schema cache describes (pfl.config.quick_check), or None."""
    from pfl.config.errors import ConfigError
    from pfl.config.quick_check import quick_check
    from pfl.config.schema_cache import cached_rules

    described = cached_rules()
    for overrides, cfg in zip(jobs, composed) if described else ():
        try:
            quick_check(cfg, described)
        except ConfigError as exc:
            return _job_error(exc, compose_with, overrides, len(jobs), dirs, structural=False)
        except Exception:  # noqa: BLE001 - anything else (a missing value): validate reports it as it always has
            return None
    return None


def _job_error(exc: BaseException, compose, overrides: list[str], n_jobs: int, dirs: list[Path],
               structural: bool = True) -> str:
    """The error's line; `structural` False: a value refused by its rule (no group to look for: two compositions saved)."""
    which = [o for o in overrides if o.partition("=")[0].lstrip("+~") in _groups()]
    where = f" (in the sweep's job with {' '.join(which)})" if n_jobs > 1 and which else ""
    group = unselected_group(compose, overrides) if structural else None
    return (group or explain(exc, _keys_of(compose, overrides), dirs)) + where


def config_dir_of(args: list[str]) -> tuple[str | None, list[str]]:
    """(the user's `--config-dir`/`-cd` folder or None, the other arguments)."""
    rest, found, it = [], None, iter(args)
    for a in it:
        if a in ("--config-dir", "-cd"):
            found = next(it, None)
        elif a.startswith("--config-dir="):
            found = a.partition("=")[2]
        else:
            rest.append(a)
    return found, rest


def output_dir_problem(args: list[str]) -> str | None:
    """An error line if the run's (or sweep's) output folder cannot be written, before Hydra tries."""
    import tempfile

    multirun = any(a in ("-m", "--multirun") for a in args)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = next((a.partition("=")[2] for a in args if a.lstrip("+~").partition("=")[0] == key), None)
    if given is None:
        given = "multirun" if multirun else "outputs"  # the static start of the default (conf/config.yaml)
    given = given.strip("'\"")
    path = Path(given.split("${")[0] or ".").expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        _no_loop_no_full_disk(path, existing)
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file")
        with tempfile.TemporaryFile(dir=existing, prefix=".pfl-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return f"error: {key}={given} cannot be written ({reason}: {existing}); choose a writable folder, e.g. {key}=/tmp/run"
    return None


MIN_FREE_BYTES = 1 << 20  # less than this on the output folder's disk: Hydra's own first files would not fit


def _no_loop_no_full_disk(path: Path, existing: Path) -> None:
    """OSError for a folder inside a symlink loop, or on a disk with (almost) no free space."""
    import errno
    import shutil

    for p in (path, *path.parents):
        try:
            os.stat(p)
        except FileNotFoundError:
            continue
        except OSError as exc:  # ELOOP: a symlink loop; ENOTDIR: a file on the way (reported below)
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "a symlink loop") from None
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise OSError(errno.ENOSPC, f"no space left on the device, {free} bytes free")


def version() -> str:
    """The installed distribution's version (pfl-meta), else the package's own."""
    from importlib import metadata

    import pfl

    try:
        return metadata.version("pfl-meta")
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH
        return pfl.__version__


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"] or args == ["-V"]:
        import hydra

        print(f"pfl {version()} (distribution pfl-meta; Hydra {hydra.__version__})")
        return
    from pfl.engine.faults import Stopped
    from pfl.hydra_plugin import ensure_registered

    try:
        ensure_registered()  # the sweeper and the `sweep` group, from an editable install too
        if _fast_help(args):
            return
        problem = precheck(args)
        if problem is None and _plain_overrides(args) is not None:
            problem = output_dir_problem(args)
        if problem:
            print(problem, file=sys.stderr)
            sys.exit(2)
        _claimed_main(args)
    except Stopped as exc:  # SIGTERM / SIGINT / SIGHUP while training (pfl.engine.faults)
        _end_bars()
        print(stopped_line(exc, args), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before training started: nothing to resume
        _end_bars()
        print("stopped (Ctrl-C) before training started", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence (pfl.engine.last_resort)
        from pfl.config.errors import ConfigError
        from pfl.engine.faults import RunFailure
        from pfl.engine.last_resort import unexpected

        if isinstance(exc, (ConfigError, RunFailure)):  # a job of a multirun: its own line and status
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2 if isinstance(exc, ConfigError) else exc.exit_code)

        print(unexpected(exc), file=sys.stderr)
        sys.exit(1)


def _end_bars() -> None:
    """The message that follows on a line of its own (bars exist only once tqdm was imported)."""
    if "tqdm" in sys.modules:
        from pfl.engine.progress import close_bars

        close_bars()


def _fast_help(args: list[str]) -> bool:
    """`--help` with overrides: printed from one composition (pfl.cli_help); False: left to Hydra."""
    from pfl.cli_help import app_help, fast_help_applies
    from pfl.config.schema_cache import register

    if not fast_help_applies(args):
        return False
    register()
    try:
        text = app_help(args, CONF_DIR, _groups())
    except Exception:  # noqa: BLE001 - a bad override: Hydra's help reports it as before
        return False
    print(text)
    return True


def _claimed_main(args: list[str]) -> None:
    """Hydra's main, with hydra.run.dir owned by this process first (pfl.engine.run_dir): a folder in
    use or holding a run is refused before Hydra writes .hydra/ and its log into it."""
    from pfl.config.errors import ConfigError
    from pfl.engine.run_dir import claim_from_args

    try:
        held = claim_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra's own failures (e.g. saving .hydra/) reach main(), not a traceback
    try:
        with held:
            _hydra_main()
    finally:
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error


def stopped_line(exc, args: list[str]) -> str:
    """`stopped at round R; resume with: python -m pfl ... resume=true hydra.run.dir=DIR`."""
    import shlex

    run_dir = getattr(exc, "run_dir", None)
    keep = [a for a in args if a.lstrip("+~").partition("=")[0] not in ("resume", "hydra.run.dir")]
    where = f"stopped at round {exc.round}" if exc.round is not None else "stopped before the first checkpoint"
    if run_dir is None or any(a in ("-m", "--multirun") for a in args):
        return f"{where} ({exc}); run the same command again to continue"
    cmd = " ".join(shlex.quote(a) for a in ["python", "-m", "pfl", *keep, "resume=true", f"hydra.run.dir={run_dir}"])
    return f"{where} ({exc}); resume with: {cmd}"


def _hydra_main() -> None:
    import hydra
    from omegaconf import DictConfig

    from pfl.config.schema_cache import register

    register()  # from the cache when it has them: --help, --cfg, --info and completion import no torch

    @hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
    def app(cfg: DictConfig):
        from pfl.config.errors import ConfigError
        from pfl.engine.faults import RunFailure
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
        except RunFailure as exc:  # the run diverged, the disk filled up: one line, its exit status
            if _multirun():
                raise
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - unforeseen: one line, the traceback into pfl.log
            if _multirun():
                raise
            from pfl.engine.last_resort import unexpected

            print(unexpected(exc), file=sys.stderr)
            sys.exit(1)
        from pytorch_lightning.utilities import rank_zero_only

        if rank_zero_only.rank == 0:  # one process of a distributed run reports
            table = format_table(summary)
            print(table)
            _to_log_files(table)
            if not _multirun():
                print(finished_lines(sys.argv[1:], _run_dir()))
        return objective(cfg, summary)

    app()


def _run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def finished_lines(args: list[str], run_dir: str) -> str:
    """Where the run's files are, and the command that continues it (e.g. with more rounds)."""
    import shlex

    keep = [a for a in args if a.lstrip("+~").partition("=")[0] not in ("resume", "hydra.run.dir")]
    cmd = " ".join(shlex.quote(a) for a in ["python", "-m", "pfl", *keep, "resume=true", f"hydra.run.dir={run_dir}"])
    return f"run directory: {run_dir}\ncontinue it (e.g. with a larger rounds=): {cmd}"


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
    from pfl.sweep import objective as sweep_objective

    return sweep_objective.read(cfg, summary)
