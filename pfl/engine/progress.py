"""A progress bar over communication rounds (Lightning's shows 'Epoch 0')."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class RoundProgressBar(TQDMProgressBar):
    def init_train_tqdm(self):
        bar = super().init_train_tqdm()
        bar.set_description("rounds")
        return bar

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.train_progress_bar.set_description("rounds")
        self.train_progress_bar.n = int(pl_module.round)  # a resumed run starts where it stopped
        self.train_progress_bar.refresh()

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
