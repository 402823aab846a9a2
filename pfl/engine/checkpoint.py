"""Atomic checkpoints: the whole run state every `every` rounds and at the end.

The file is written to a temporary name and renamed, so `last.ckpt` is always
a complete checkpoint even if the process is killed (kill -9) while saving, or
the disk fills up (the temporary file is removed, the previous checkpoint
stays). It holds the global model, every stage's server optimizer state, the
round counter, per-client state, the evaluation history, RNG states and the
run's resolved configuration (a resume compares it with its own).

Checkpoints hold only tensors, numbers, strings, lists and dicts, and every
load uses `torch.load(weights_only=True)` (`read_checkpoint`): a file from
elsewhere that would run code when unpickled is refused with one line.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from pathlib import Path

import pytorch_lightning as pl

from pfl.config.errors import ConfigError
from pfl.engine.faults import RunFailure

log = logging.getLogger("pfl")

#: config keys a resumed run may change: its length, how it is logged and checkpointed, and where it runs
#: (a run resumes on another device or number of ranks: tests/engine/test_distributed.py)
RESUME_MAY_CHANGE = ("rounds", "resume", "overwrite", "logger", "checkpoint_every", "callbacks", "device", "trainer")


class CheckpointError(ConfigError):
    """A checkpoint file that cannot be used; the message says why and what to do."""

    def __init__(self, key: str, path, message: str):
        self.key, self.value, self.allowed = key, str(path), message
        ValueError.__init__(self, message)


def read_checkpoint(path: str | os.PathLike, key: str, what: str = "") -> dict:
    """The checkpoint dict in `path`, loaded without running code; CheckpointError names `key`
    (the setting that pointed at the file) and the problem."""
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        glob = re.search(r"GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if glob:
            raise CheckpointError(key, path, f"{key}: {path} holds objects other than tensors, numbers, strings, lists "
                                  f"and dicts ({glob.group(1) or glob.group(2)}); refused: loading it would run code "
                                  "from the file") from None
        raise CheckpointError(key, path, f"{key}: {path} is not a checkpoint ({_reason(exc)}){what}") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError, KeyError) as exc:
        raise CheckpointError(key, path, f"{key}: {path} is not a complete checkpoint ({_reason(exc)}){what}") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and "round" in ckpt["state_dict"]):
        raise CheckpointError(key, path, f"{key}: {path} is not a pfl checkpoint (no state_dict with a round counter){what}")
    return ckpt


def _reason(exc: BaseException) -> str:
    """The first sentence of the first line that says something (torch's messages run long)."""
    noise = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith(noise)]
    first = lines[0] if lines else type(exc).__name__
    return first.split(". ")[0].rstrip(".")


def flat(d, prefix: str = "") -> dict:
    """{dotted key: value} of nested dicts and lists."""
    out = {}
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else None
    if items is None:
        return {prefix[:-1]: d}
    for k, v in items:
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, (dict, list)) and v else {f"{prefix}{k}": v})
    return out


def config_changes(saved: dict, now: dict) -> list[str]:
    """`key: saved -> now` for every setting that differs, except those a resume may change."""
    a, b = flat(saved), flat(now)

    def free(k: str) -> bool:
        parts = k.split(".")
        return parts[0] in RESUME_MAY_CHANGE or (parts[0] == "stages" and parts[-1] == "rounds")

    return [f"{k}: {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in sorted(set(a) | set(b))
            if not free(k) and a.get(k, "(unset)") != b.get(k, "(unset)")]


class RoundCheckpoint(pl.Callback):
    def __init__(self, dirpath: str | os.PathLike, every: int, config: dict | None = None):
        self.dir = Path(dirpath)
        self.every = every
        self.config = config  # the resolved run configuration, stored in every checkpoint
        self.saved_round: int | None = None  # the round of last.ckpt (None: none written by this run yet)

    @property
    def last(self) -> Path:
        return self.dir / "last.ckpt"

    def save(self, trainer: pl.Trainer) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / ".last.ckpt.tmp"
        try:
            trainer.save_checkpoint(tmp)  # every rank calls it; rank 0 writes
            if trainer.is_global_zero:
                os.replace(tmp, self.last)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            kept = (f"the previous checkpoint (round {self.saved_round}) is kept" if self.saved_round is not None
                    else "the previous checkpoint is kept" if self.last.is_file() else "no checkpoint is kept")
            raise RunFailure(f"could not write the checkpoint {self.last} ({exc.strerror or exc}); {kept}; "
                             "free some space (or choose another hydra.run.dir) and resume with resume=true") from None
        self.saved_round = int(trainer.lightning_module.round)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.config is not None:
            checkpoint["pfl_config"] = self.config

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        r = int(pl_module.round)
        if self.every and r % self.every == 0 and r < pl_module.total_rounds:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer)


def load_global_params(path: str | Path) -> dict:
    """The server's parameters stored in a checkpoint file or a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise ConfigError("init_from", str(path), "a checkpoint file or a run directory with checkpoints/last.ckpt")
    ckpt = read_checkpoint(path, "init_from")
    names = ckpt.get("pfl", {}).get("param_names", {})
    prefix = "global_params."
    return {names.get(k[len(prefix):], k[len(prefix):]): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def resume_point(resume, ckpt_cb: RoundCheckpoint, run_dir: Path, config: dict, module) -> tuple[str | None, int | None]:
    """(checkpoint to resume from, its round) under `resume` (true, false or auto); a refused resume raises."""
    if resume is True and not ckpt_cb.last.is_file():
        raise CheckpointError("resume", run_dir, f"resume=true: nothing to resume in {run_dir} (no checkpoints/last.ckpt); "
                              "give the run's hydra.run.dir, or resume=auto to start when there is no checkpoint")
    if not (resume and ckpt_cb.last.is_file()):
        if resume:
            log.info("resume=auto: no checkpoint in %s, starting from round 0", run_dir)
        return None, None
    ckpt = read_checkpoint(ckpt_cb.last, "resume", "; delete it (or use another hydra.run.dir) to start over")
    changed = config_changes(ckpt["pfl_config"], config) if "pfl_config" in ckpt else []
    if changed:
        raise CheckpointError("resume", run_dir, f"resume: the configuration differs from the checkpoint's in "
                              f"{'; '.join(changed)} (only rounds and logging may change on resume; "
                              "use another hydra.run.dir for a new run)")
    from pfl.engine.resume_check import check_resume  # tensors, rounds, stages

    resume_round = ckpt_cb.saved_round = check_resume(ckpt, module, config, ckpt_cb.last)
    log.info("resuming from %s (round %d)", ckpt_cb.last, resume_round)
    return str(ckpt_cb.last), resume_round
