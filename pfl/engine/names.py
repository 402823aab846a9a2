"""One name per logged quantity, the same in metrics.csv, every logger (W&B, TensorBoard, MLflow), the
`final` block of summary.json, sweep objectives and pruning reports, and the report.

    train/loss, train/<term>       per round: the algorithm's training metrics (AFML: train/l_enc, ...)
    server/<term>                  per round: the algorithm's server-side scalars (AFML: server/sigma_mean, ...)
    bytes/up, bytes/down           per round: bytes the cohort sent / received
    bytes/up_total, bytes/down_total   since round 0
    stage                          per round: the index of the running stage
    heldout/initial_acc            at each evaluation: held-out clients, the global model (k = 0)
    heldout/pers_acc_K             ... after K personalization epochs
    heldout/worse_frac_K           ... fraction of clients worse after K epochs than at k = 0
    heldout/local_acc, heldout/beats_local_frac_K   with personalization.local_baseline (headline population)
    train_clients/...              the same for the training clients (a sample, or the headline: population=train|both)
    tracked/initial_acc, tracked/pers_acc_K   every personalization.track_every rounds: the tracked sample of the
                                   headline clients (rounds to target at one-round resolution)
    time/eval_s, time/wall_s       seconds of the evaluation / since the start
    time/track_s                   seconds of the round's tracked measurement
    eval/clients                   clients personalized in the evaluation (a sample before the last one)

The step of every row is the round (1-based: the row of round r is logged after r rounds). Names use
only letters, digits and `_ . /`, which TensorBoard and MLflow keep as they are.
"""

from __future__ import annotations

PREFIX = {"heldout": "heldout", "train": "train_clients"}  # population -> metric prefix


def initial(pop: str = "heldout") -> str:
    return f"{PREFIX[pop]}/initial_acc"


def pers(k, pop: str = "heldout") -> str:
    return f"{PREFIX[pop]}/pers_acc_{k}"


def worse(k, pop: str = "heldout") -> str:
    return f"{PREFIX[pop]}/worse_frac_{k}"


def curve(pop: str = "heldout") -> str:
    return f"{PREFIX[pop]}/curve"  # a list (kept in the history, not logged as a scalar)


def local(pop: str = "heldout") -> str:
    return f"{PREFIX[pop]}/local_acc"


def beats_local(k, pop: str = "heldout") -> str:
    return f"{PREFIX[pop]}/beats_local_frac_{k}"


def tracked(k: int = 0) -> str:
    """The tracked sample's accuracy after k personalization epochs (k = 0: initial)."""
    return "tracked/initial_acc" if k == 0 else f"tracked/pers_acc_{k}"


def train(term: str) -> str:
    return f"train/{term}"


def server(term: str) -> str:
    return f"server/{term}"


def pers_epochs(keys, pop: str = "heldout") -> list[int]:
    """The K of every `pers_acc_K` key among `keys`, sorted."""
    head = f"{PREFIX[pop]}/pers_acc_"
    return sorted(int(k[len(head):]) for k in keys if k.startswith(head) and k[len(head):].isdigit())


BYTES_UP, BYTES_DOWN = "bytes/up", "bytes/down"
BYTES_UP_TOTAL, BYTES_DOWN_TOTAL = "bytes/up_total", "bytes/down_total"
STAGE = "stage"
EVAL_S, WALL_S = "time/eval_s", "time/wall_s"
TRACK_S = "time/track_s"  # seconds of the round's rounds-to-target measurement
EVAL_CLIENTS = "eval/clients"  # clients personalized in the evaluation (local-only reference included)
ROUND = "round"  # the step: a column of metrics.csv and a key of the history, not a logged metric
