"""A progress bar over communication rounds (Lightning's shows 'Epoch 0' and, after a resume, 'n/?').

Whether a bar is drawn at all: `trainer.enable_progress_bar` (true / false), or by default only when
the console is a terminal and TQDM_DISABLE is not set, so that log files (SLURM, `> run.log`) get the
log lines and no carriage-return fragments of a bar.
"""

from __future__ import annotations

import os
import sys

from pytorch_lightning.callbacks import TQDMProgressBar


def progress_bar_enabled(setting: bool | None) -> bool:
    """The bar is on when asked for, else on a terminal without TQDM_DISABLE (tqdm's own switch)."""
    if os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    if setting is not None:
        return bool(setting)
    return sys.stdout.isatty()  # Lightning's bar writes to stdout


def close_bars() -> None:
    """End every open tqdm bar (the evaluation's below the rounds bar first), so that what is printed next
    (a stop, an error) starts on a line of its own instead of being spliced into a bar's line."""
    from tqdm import tqdm

    for bar in sorted(list(getattr(tqdm, "_instances", ())), key=lambda b: -abs(getattr(b, "pos", 0) or 0)):
        try:
            bar.close()  # a kept bar is redrawn (over a terminal's `^C`) and ends its line; others are cleared
        except Exception:  # noqa: BLE001 - a bar on a closed stream: nothing to tidy
            pass
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


class RoundProgressBar(TQDMProgressBar):
    def __init__(self, total: int | None = None, start: int = 0):
        super().__init__()
        self.total, self.start = total, start  # known before the bar is drawn: its first line is right

    @property
    def train_description(self) -> str:
        return "rounds"

    def init_train_tqdm(self):
        from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

        return Tqdm(desc="rounds", total=self.total, initial=self.start, position=2 * self.process_position,
                    disable=self.is_disabled, leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0,
                    bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # not Lightning's (it resets the bar to 0/?, then 'Epoch 0')
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.total = pl_module.total_rounds  # the whole run, also after a resume (Lightning would show "?")
        bar.n = bar.initial = int(pl_module.round)  # a resumed run starts where it stopped; the ETA counts from here
        bar.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = int(pl_module.round)
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_exception(self, trainer, pl_module, exception) -> None:
        close_bars()  # Ctrl-C, SIGTERM, an error: its message below the bars, not in them

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
