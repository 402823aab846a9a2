"""One-line configuration errors: what is wrong, and what is allowed."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has a wrong value. The message names the key and what is allowed."""

    def __init__(self, key: str, value, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed: expected {allowed}")


def check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions; a swap of neighbours counts 1)."""
    prev2, prev = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            d = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                d = min(d, prev2[j - 2] + 1)
            cur.append(d)
        prev2, prev = prev, cur
    return prev[-1]


def closest(name: str, candidates) -> str | None:
    """The candidate nearest to `name` by edit distance, if it is near enough to be a typo of it."""
    best = min(((edit_distance(name.lower(), c.lower()), c) for c in candidates if c != name), default=None)
    if best is None:
        return None
    return best[1] if best[0] <= max(1, min(3, len(name) // 3)) else None


class UnknownSetting(ConfigError):
    """A key that is not a setting where it was given; suggests the nearest valid key."""

    def __init__(self, key: str, value, candidates, listing: str):
        self.key, self.value = key, value
        parent, _, leaf = key.rpartition(".")
        near = closest(leaf, candidates)
        self.suggestion = f"{parent}.{near}" if parent and near else near
        self.allowed = (f"did you mean '{self.suggestion}'? " if near else "") + f"({listing})"
        ValueError.__init__(self, f"unknown setting '{key}'{'; ' if near else ' '}{self.allowed}")
