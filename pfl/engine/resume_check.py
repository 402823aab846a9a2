"""A resume's checkpoint against the run it should continue, before any file is touched.

`check_resume(ckpt, module, config)` (the run's resolved configuration) refuses, with one line (`CheckpointError`, exit 2):

- tensors that do not match the model the configuration builds: a key missing from the checkpoint or
  from the model, or a tensor of another shape (each named);
- `rounds` below the checkpoint's round (the summary would report fewer rounds than the model had);
- a stage layout that moves the checkpoint's round into another stage: the stages before the one
  the checkpoint is in keep their rounds, and that stage still reaches the checkpoint's round.

The other settings are compared by `pfl.engine.checkpoint.config_changes` (only rounds and logging
may change).
"""

from __future__ import annotations

from pfl.engine.checkpoint import CheckpointError

MAX_NAMED = 3


def check_resume(ckpt: dict, module, config: dict, path) -> int:
    """The checkpoint's round, after the checks above; `path` is the checkpoint file (for messages)."""
    state = ckpt["state_dict"]
    rnd = int(state["round"])
    _check_tensors(state, module.state_dict(), path)
    if rnd > module.total_rounds:
        key = "rounds" if config.get("stages") is None else "the stages' rounds"
        raise CheckpointError("resume", path, f"resume: {path} is at round {rnd}, but {key} add up to "
                              f"{module.total_rounds}; give at least {rnd} rounds to continue it (a summary of fewer "
                              "rounds than the model was trained for would be wrong)")
    saved = (ckpt.get("pfl_config") or {}).get("stages")
    if saved and config.get("stages") is not None:
        _check_stages([int(s["rounds"]) for s in saved], [int(s["rounds"]) for s in config["stages"]], rnd, path)
    return rnd


def _check_tensors(saved: dict, own: dict, path) -> None:
    missing = [k for k in own if k not in saved]
    extra = [k for k in saved if k not in own]
    shapes = [f"{k} {list(saved[k].shape)} (the model's: {list(own[k].shape)})" for k in own
              if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(own[k].shape)]
    problems = []
    for what, keys in (("missing", missing), ("not in the model", extra), ("of another shape", shapes)):
        if keys:
            more = f" and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else ""
            problems.append(f"{what}: {', '.join(keys[:MAX_NAMED])}{more}")
    if problems:
        raise CheckpointError("resume", path, f"resume: {path} does not match the model of this configuration "
                              f"(tensors {'; '.join(problems)}); resume with the run's own settings, or delete it "
                              "(or use another hydra.run.dir) to start over")


def _check_stages(saved: list[int], now: list[int], rnd: int, path) -> None:
    if len(saved) != len(now):
        raise CheckpointError("resume", path, f"resume: the checkpoint's run has {len(saved)} stages, this one "
                              f"{len(now)}; keep the stages of the run")
    start = 0
    for i, (a, b) in enumerate(zip(saved, now)):
        if rnd <= start:  # stages the checkpoint has not entered may change their length
            return
        inside = rnd <= start + a
        if (not inside and a != b) or (inside and start + b < rnd):
            raise CheckpointError("resume", path, f"resume: stages.{i}.rounds={b} moves the checkpoint's round "
                                  f"{rnd} into another stage (the run had stages.{i}.rounds={a}); only stages "
                                  "after it, and the one it is in, may change their rounds")
        start += a
