"""The pfl arm: the real engine (`pfl.run.train`: Hydra config, Lightning Trainer,
FederatedModule, loggers, checkpoint at the end) on a benchmark case.

The case's tensors come in as the data set (`dataset._target_:
pfl.bench.cases.bench_data`); everything else is the ordinary config with
overrides. A Lightning callback (`RoundTimer`) times round starts: a round's
time is from its start to the next round's start, Lightning's own work between
rounds included. The last round is not timed (it ends with the run's one
evaluation), so a run has warm-up + measured + 1 rounds. With
`trainer.devices=N` Lightning starts the other ranks by re-running this
command; rank 0 writes the result.
"""

from __future__ import annotations

import json
import os
import time

import pytorch_lightning as pl

from pfl.bench.measure import Probe

_MODEL = {"image": ["model=emnist_cnn", "model.dropout1=0", "model.dropout2=0"],
          "features": ["model=mlp"], "text": ["model=char_lstm"]}


class RoundTimer(pl.Callback):
    """Times rounds `warmup` .. `total - 2` and writes the result (rank 0) to `out`."""

    def __init__(self, out: str, warmup: int, total: int, device: str = "cpu", t0: float | None = None,
                 per_evaluation: bool = False):
        self.out, self.warmup, self.total, self.t0, self.per_evaluation = out, warmup, total, t0, per_evaluation
        self.probe = Probe(device)
        self.result: dict = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        r = int(module.round)
        if self.t0 is not None and "first_round_s" not in self.result:
            self.result["first_round_s"] = time.time() - self.t0
        if r == self.warmup:
            self.probe.start()
        if self.warmup <= r < self.total:
            self.probe.tick()
        if r == self.total - 1 and not self.per_evaluation:
            self.result.update(self.probe.stop())

    def on_train_end(self, trainer, module):
        if not self.result:
            self.result.update(self.probe.stop())
        if self.per_evaluation:  # the eval case: seconds of each evaluation after the warm-up ones
            from pfl.engine import names

            self.result["times"] = [h[names.EVAL_S] for h in module.history][self.warmup:]
        self.result.update(auto=module.backend.kind, threads=_threads(), world=trainer.world_size)
        if trainer.is_global_zero:
            with open(self.out, "w") as f:
                json.dump(self.result, f)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def overrides(spec: dict) -> list[str]:
    """The `python -m pfl` settings of this arm (the dataset is set separately), the arm's own last."""
    case, per_eval = spec["case"], spec["case"]["name"] == "eval"
    total = spec["warmup"] + spec["rounds"] + (0 if per_eval else 1)
    out = ["dataset=synthetic", *_MODEL[case["kind"]], "algorithm=fedavg", f"algorithm.local_epochs={1 if per_eval else case['epochs']}",
           f"client_opt.lr={case['lr']}", f"client_opt.batch_size={case['batch']}", "server_opt=sgd",
           f"clients_per_round={case['cohort']}", f"rounds={total}", "checkpoint_every=0", f"seed={spec.get('seed', 0)}",
           f"device={spec['device']}", f"engine.backend={spec['backend']}", f"trainer.devices={spec['devices']}",
           "trainer.enable_progress_bar=false", "personalization.train_clients=0"]
    if per_eval:
        out += ["eval_every=1", "personalization.heldout_clients=null", f"personalization.curve_epochs={case['epochs']}",
                f"personalization.epochs=[1,{case['epochs']}]"]
    else:
        out += [f"eval_every={total}", "personalization.heldout_clients=1", "personalization.curve_epochs=1",
                "personalization.epochs=[1]"]
    return out + list(spec.get("overrides", []))  # an arm's own settings (pfl.bench.gpu: replicas=9)


def run(spec: dict, out: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, open_dict

    from pfl.config import register
    from pfl.config.resources import CONF_DIR
    from pfl.run import train

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides(spec))
    per_eval = spec["case"]["name"] == "eval"
    with open_dict(cfg):
        cfg.dataset = OmegaConf.create({"_target_": "pfl.bench.cases.bench_data", "name": "bench",
                                        "case": spec["case"], "seed": spec.get("seed", 0)})
        cfg.callbacks = [{"_target_": "pfl.bench.engine.RoundTimer", "out": out, "warmup": spec["warmup"],
                          "total": cfg.rounds, "device": spec["device"], "t0": spec.get("t0"),
                          "per_evaluation": per_eval}]
    run_dir = os.path.splitext(out)[0] + "_run"  # one folder per measurement: a run directory holds one run
    train(cfg, run_dir)
