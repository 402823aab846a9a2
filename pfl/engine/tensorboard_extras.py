"""What a TensorBoard run gets at its end besides the scalars: hparams (the config and the final
metrics, so runs compare in the HParams tab), the run's plots as images, and its config as text.

Lightning's TensorBoardLogger (`logger=tensorboard`, default_hp_metric false) writes no hparams at the
start; `log_run_summary` writes them once, with the metrics' final values (tags `hparams/<name>`).
"""

from __future__ import annotations

from pathlib import Path

from pfl.engine.experiment import RunInfo


def is_tensorboard(logger) -> bool:
    return any(c.__name__ == "TensorBoardLogger" for c in type(logger).__mro__)


def final_metrics(summary: dict) -> dict[str, float]:
    """The headline numbers of summary.json, as `hparams/<name>` (pers_acc_k per personalization epoch k)."""
    from pfl.engine.summary import headline_metrics

    return headline_metrics(summary, "hparams")


def log_run_summary(logger, run: RunInfo, summary: dict, run_dir: Path) -> None:
    """hparams with the final metrics, plots/*.png as images, config.yaml as text (markdown code)."""
    import numpy as np
    from matplotlib import image

    params = {"algorithm": run.algorithm, "dataset": run.dataset, "model": run.model, "seed": run.seed,
              "zeta": run.zeta, "clients_per_round": run.clients_per_round, "config": run.config}
    writer = logger.experiment
    if getattr(writer, "file_writer", True) is None and hasattr(writer, "_filename_suffix"):
        # tensorboardX reopens the writer Lightning closed at the end of fit with a file named by the second
        # and the host: within the same second as the first file it would overwrite the run's scalars
        writer._filename_suffix += ".summary"
    logger.log_hyperparams(params, final_metrics(summary))
    for png in sorted(Path(run_dir).glob("plots/*.png")):
        pixels = image.imread(png)
        writer.add_image(f"plots/{png.stem}", np.ascontiguousarray(pixels[..., :3]), dataformats="HWC")
    if run.config_yaml:
        writer.add_text("config", "    " + run.config_yaml.rstrip().replace("\n", "\n    "))  # a code block
    writer.flush()
