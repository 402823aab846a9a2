"""Rounds to a target accuracy, and the cost (bytes, FLOPs) of getting there, from a run's histories.

Two series can measure a quantity q (q = 0: initial accuracy, q = k: Pers.k) of the headline clients:

- the tracked series (`track_history`, one row every `personalization.track_every` rounds, a fixed sample
  of `track_clients` headline clients): measured, not interpolated, at that resolution; used for the
  initial accuracy and for the k of `track_epochs` whenever tracking is on;
- the evaluation rows (`history`, every `eval_every` rounds; earlier ones may be the `interim_*` sample):
  used for every other k, so their resolution is `eval_every`.

Nothing is interpolated: a round is one at which the quantity was measured at or above the target.
`resolution` says, per quantity, which series and how many rounds apart.

Each method's own target (the second paper's Fig. 4a: "the target accuracy as its test accuracy when
convergence"): `own_target_fraction` of the last value of the same series, and the bytes and FLOPs spent
up to the first round that reaches it. FLOPs are the stages' measured first-round FLOPs times the rounds
run in each stage up to that round.
"""

from __future__ import annotations

import math

from pfl.engine import names


def _value(row: dict, pop: str | None, k: int):
    """Quantity k of `row` (pop None: a tracked row); from the curve when k is not a reported column."""
    if pop is None:
        return row.get(names.tracked(k))
    v = row.get(names.initial(pop) if k == 0 else names.pers(k, pop))
    if v is None:
        curve = row.get(names.curve(pop))
        v = curve[k] if isinstance(curve, list) and k < len(curve) else None
    return v


def _ok(v) -> bool:
    return isinstance(v, (int, float)) and not math.isnan(v)


def series(rows: list[dict], pop: str | None, k: int) -> list[tuple[int, float, dict]]:
    """[(round, value, row)] of quantity k where it was measured, in round order."""
    out = [(int(r[names.ROUND]), float(_value(r, pop, k)), r) for r in rows if _ok(_value(r, pop, k))]
    return sorted(out, key=lambda t: t[0])


def first_round(points, target: float):
    """The first (round, value, row) whose value >= target, or None."""
    return next((p for p in points if p[1] >= target), None)


def flops_until(module, r: int) -> int | None:
    """FLOPs of the first r rounds: each stage's measured first-round FLOPs times its rounds so far (None:
    not counted, engine.count_flops=false)."""
    if not getattr(module, "count_flops", True):
        return None
    total, start = 0, 0
    for s in module.stages:
        total += module.flops.get(s.name, 0) * max(0, min(r, start + s.rounds) - start)
        start += s.rounds
    return total


def quantities(module) -> list[int]:
    p = module.personalization
    return sorted({0, *module.report_epochs, *(int(k) for k in p.track_epochs)})


def measured(module, k: int) -> tuple[list, dict]:
    """The series that measures quantity k, and its resolution."""
    p = module.personalization
    tracked = p.track_every > 0 and (k == 0 or k in set(int(j) for j in p.track_epochs))
    if tracked:
        pts = series(module.track_history, None, k)
        if pts:
            n = len(module.sample(p.headline, p.track_clients))
            return pts, {"series": "tracked", "every": p.track_every, "clients": n}
    return (series(module.history, p.headline, k),
            {"series": "evaluation", "every": module.eval_every, "clients": len(module.eval_clients(p.headline))})


def rounds_to_targets(module, target: float) -> tuple[dict, dict]:
    """({key: first round at or above target}, {key: resolution}); keys "initial" and str(k), plus the
    older "personalized_<k>" names (equal to str(k)) for the reported k."""
    rounds, resolution = {}, {}
    for k in quantities(module):
        pts, res = measured(module, k)
        hit = first_round(pts, target)
        key = "initial" if k == 0 else str(k)
        rounds[key] = None if hit is None else hit[0]
        resolution[key] = res
    for k in module.report_epochs:
        rounds[f"personalized_{k}"] = rounds[str(k)]
    return rounds, resolution


def own_targets(module, fraction: float) -> dict:
    """Per quantity: the run's own final value, fraction x it, the first round reaching that, and the
    bytes (down, up, sum) and FLOPs spent until then (Fig. 4a of the second paper)."""
    out = {"fraction": fraction}
    for k in quantities(module):
        pts, res = measured(module, k)
        key = "initial" if k == 0 else str(k)
        if not pts:
            out[key] = None
            continue
        final = pts[-1][1]
        hit = first_round(pts, fraction * final)
        entry = {"final_accuracy": final, "target": fraction * final, "round": None, "bytes_down": None,
                 "bytes_up": None, "bytes": None, "flops": None, "series": res["series"]}
        if hit is not None:
            r, _, row = hit
            down, up = row.get(names.BYTES_DOWN_TOTAL), row.get(names.BYTES_UP_TOTAL)
            entry.update(round=r, bytes_down=down, bytes_up=up,
                         bytes=None if down is None or up is None else down + up, flops=flops_until(module, r))
        out[key] = entry
    return out
