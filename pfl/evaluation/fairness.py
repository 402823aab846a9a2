"""Personalized vs local-only accuracy per client (the AFML paper's fairness view).

With `personalization.local_baseline=true`, every evaluated held-out client
also trains a model alone, from the initial model, for
`personalization.local_epochs` epochs of SGD(`local_lr`) (the `local`
algorithm's personalization): Acc_local. A client "beats local" after k
personalization epochs when its personalized accuracy is strictly higher.
"""

from __future__ import annotations

from pathlib import Path

from pfl.evaluation.personalize import PersonalizationResult


def beats_local(res: PersonalizationResult, epochs: list[int]) -> dict[str, float]:
    """{str(k): fraction of clients with test data whose accuracy after k epochs > Acc_local}."""
    if res.local_accuracy is None:
        return {}
    valid = res.num_test > 0
    acc = res.accuracy[valid]
    local = res.local_accuracy[valid].to(acc.dtype)
    if len(acc) == 0:
        return {}
    return {str(k): float((acc[:, k] > local).double().mean()) for k in epochs if k < acc.shape[1]}


def scatter_plot(res: PersonalizationResult, k: int, path: Path, title: str = "") -> Path | None:
    """Personalized accuracy after k epochs (y) against Acc_local (x), one point per client."""
    if res.local_accuracy is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = res.num_test > 0
    x = res.local_accuracy[valid].numpy()
    y = res.accuracy[valid, k].numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x, y, s=12, alpha=0.7)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_xlabel("local-only accuracy")
    ax.set_ylabel(f"personalized accuracy (k={k})")
    frac = float((res.accuracy[valid, k] > res.local_accuracy[valid].to(res.accuracy.dtype)).double().mean())
    ax.set_title(f"{title} beats local: {frac:.2f}".strip(), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
