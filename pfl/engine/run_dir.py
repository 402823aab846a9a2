"""Who owns a run directory: one run at a time, and an existing run is never overwritten by accident.

`claim(run_dir, resume, overwrite)` is called before anything is written into the folder (by the
command line before Hydra writes `.hydra/` and the log, and by `pfl.run.train` for runs started
from Python or by a sweep); it returns a `Claim` whose `release()` gives the folder back.

- **Lock.** `<run_dir>/.pfl.lock` holds the owner (pid, host, start time, command) and an
  exclusive `fcntl.flock` for as long as the owner lives. The kernel drops the lock when the
  process ends, however it ends (kill -9 included), so a lock file whose lock can be taken is
  stale: it is taken over with a warning naming the dead owner. A live owner refuses the
  claim with one line naming it (`RunDirBusy`, exit 2). Claims within one process nest.
- **Existing runs.** A folder that holds a run (`summary.json`, `metrics.csv` or
  `checkpoints/last.ckpt`) is refused to a new run (`resume=false`) unless `overwrite=true`
  (which removes that run's summary, metrics and checkpoint first); `resume=true` / `auto`
  continue it. The refusal reads only: nothing in the folder is changed.

Ranks other than 0 of a distributed run (RANK / LOCAL_RANK / NODE_RANK / SLURM_PROCID set and
non-zero) claim nothing: rank 0 owns the folder for all of them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from pfl.config.errors import ConfigError

log = logging.getLogger("pfl")

LOCK = ".pfl.lock"
RUN_FILES = ("summary.json", "metrics.csv", "checkpoints/last.ckpt")
_held: dict[str, list] = {}  # real path of the run dir -> [fd, nesting count]


class RunDirBusy(ConfigError):
    """The run directory is owned by a live run, or holds a run that this one would overwrite."""

    def __init__(self, run_dir, message: str):
        self.key, self.value, self.allowed = "hydra.run.dir", str(run_dir), message
        ValueError.__init__(self, message)


class Claim:
    def __init__(self, key: str | None):
        self.key = key

    def release(self) -> None:
        if self.key is None or self.key not in _held:
            return
        entry = _held[self.key]
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[self.key]
        try:
            os.unlink(Path(self.key) / LOCK)  # while still locked: nobody can have taken it
        except OSError:
            pass
        os.close(entry[0])
        self.key = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_secondary_rank() -> bool:
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "0")
        if value.isdigit() and int(value) > 0:
            return True
    return False


def existing_run(run_dir: Path) -> str | None:
    """What run the folder holds ("a finished run (summary.json: completed)", ...), or None."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            status = json.loads(summary.read_text()).get("status", "?")
        except (OSError, ValueError, AttributeError):
            status = "unreadable"
        return f"a {'finished' if status == 'completed' else 'stopped'} run (summary.json: {status})"
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "an interrupted run (checkpoints/last.ckpt)"
    if (run_dir / "metrics.csv").is_file():
        return "an interrupted run (metrics.csv, no checkpoint)"
    return None


def claim(run_dir: str | os.PathLike, resume=False, overwrite: bool = False) -> Claim:
    """Own `run_dir` (see the module docstring); raises RunDirBusy with one line."""
    run_dir = Path(run_dir)
    if is_secondary_rank():
        return Claim(None)
    key = str(run_dir.resolve())
    if key in _held:  # this process owns it already (the command line claimed it before train())
        _held[key][1] += 1
        return Claim(key)
    owner = _live_owner(run_dir)
    if owner:
        raise RunDirBusy(run_dir, f"hydra.run.dir={run_dir} is in use by another run ({owner}); wait for it to "
                         "end or stop it, or choose another hydra.run.dir")
    held = existing_run(run_dir) if run_dir.is_dir() else None
    if held and resume is False and not overwrite:
        raise RunDirBusy(run_dir, f"hydra.run.dir={run_dir} holds {held}; continue it with resume=true, replace it "
                         "with overwrite=true, or choose another hydra.run.dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = _lock(run_dir)
    _held[key] = [fd, 1]
    if held and overwrite and resume is False:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        log.warning("overwrite=true: replacing %s in %s", held, run_dir)
    return Claim(key)


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f": {info['command']}" if info.get("command") else ""))


def _read(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def _live_owner(run_dir: Path) -> str | None:
    """The owner of a lock held by a live process, or None (no lock file, or a stale one)."""
    import fcntl

    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        return _describe(_read(path))
    finally:
        os.close(fd)


def _lock(run_dir: Path) -> int:
    """An open descriptor of run_dir/.pfl.lock, exclusively flocked, holding this process's details."""
    import fcntl

    path = run_dir / LOCK
    for _ in range(10):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            owner = _describe(_read(path))
            raise RunDirBusy(run_dir, f"hydra.run.dir={run_dir} is in use by another run ({owner}); wait for it to "
                             "end or stop it, or choose another hydra.run.dir") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its owner removed the file between our open and our lock: try the new one
            os.close(fd)
            continue
        previous = _read(path)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            log.warning("hydra.run.dir=%s: taking over the lock of a run that is no longer running (%s)",
                        run_dir, _describe(previous))
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return fd
    raise RunDirBusy(run_dir, f"hydra.run.dir={run_dir}: could not take its lock (other runs keep replacing it)")


def claim_from_args(args: list[str]) -> Claim:
    """The command line's claim on `hydra.run.dir=DIR` before Hydra writes into it (a single run with
    the folder given literally; otherwise `pfl.run.train` claims the folder Hydra chose)."""
    if any(a in ("-m", "--multirun") for a in args):
        return Claim(None)
    given = {}
    for a in args:
        name, sep, value = a.partition("=")
        if sep:
            given[name.lstrip("+~")] = value.strip("'\"")
    run_dir = given.get("hydra.run.dir")
    if not run_dir or "${" in run_dir:
        return Claim(None)
    resume = {"true": True, "auto": "auto"}.get(given.get("resume", "false").lower(), False)
    overwrite = given.get("overwrite", "false").lower() == "true"
    return claim(Path(run_dir).expanduser().absolute(), resume, overwrite)
