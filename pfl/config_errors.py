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
