"""Non-dominated (Pareto-optimal) points of a multi-objective result."""

from __future__ import annotations


def pareto_front(points: list[list[float]], directions: list[str]) -> list[int]:
    """Indices of the points no other point dominates (at least as good everywhere, better somewhere)."""
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [[s * v for s, v in zip(sign, p)] for p in points]
    front = []
    for i, a in enumerate(scored):
        dominated = any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a))
                        for j, b in enumerate(scored) if j != i)
        if not dominated:
            front.append(i)
    return front
