"""The console line of an evaluation: its headline metrics, how many clients it measured, and the
spread over replicas.

    round 25: heldout initial_acc=0.5120, pers_acc_5=0.8012 (sample of 10 of 500 clients) (evaluation 1.2 s)
    round 100: heldout initial_acc=0.5120 ± 0.0110, pers_acc_5=0.8012 ± 0.0093 (mean ± std of 9 replicas; all 500 clients) (evaluation 9.8 s)
"""

from __future__ import annotations

import statistics


def eval_line(r: int, population: str, rows: list[dict], sampled: int, total: int, seconds: float) -> str:
    """`rows`: one per replica (their headline metrics under `<population>/<name>`); `sampled` of `total`
    headline clients were evaluated (per replica)."""
    prefix = population + "/"
    keys = [k for k, v in rows[0].items() if k.startswith(prefix) and isinstance(v, float) and "frac" not in k]
    parts = []
    for k in keys:
        vals = [row[k] for row in rows if isinstance(row.get(k), (int, float))]
        text = f"{k[len(prefix):]}={statistics.fmean(vals):.4f}"
        if len(vals) > 1:
            text += f" ± {statistics.stdev(vals):.4f}"
        parts.append(text)
    who = f"all {total} clients" if sampled >= total else f"sample of {sampled} of {total} clients"
    spread = f"mean ± std of {len(rows)} replicas; " if len(rows) > 1 else ""
    return f"round {r}: {population} " + ", ".join(parts) + f" ({spread}{who}) (evaluation {seconds:.1f} s)"
