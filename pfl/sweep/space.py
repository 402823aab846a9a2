"""Search spaces in Hydra's sweep syntax, as Optuna distributions.

The same strings work in a sweep file and on the command line:

    choice(a, b, c)  or  a,b,c           categorical
    range(1, 11)  /  range(2, 21, 2)      integers start..stop-1 by step (Python's range)
    interval(0.001, 0.1)                  float in [low, high]
    tag(log, interval(0.001, 0.1))        log-uniform float
    tag(int, interval(1, 64))             integer in [low, high]; add `log` for log-uniform

Anything else is a fixed value given to every trial.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

from pfl.config.errors import ConfigError

_parser = None


def _parse(key: str, value: str):
    global _parser
    _parser = _parser or OverridesParser.create()
    try:
        return _parser.parse_override(f"{key}={value}")
    except Exception as exc:  # noqa: BLE001 - a bad space is a config error
        raise ConfigError(f"sweep.params.{key}", value, f"Hydra sweep syntax ({str(exc).splitlines()[0]})") from None


def param_name(key: str) -> str:
    """Optuna's name for an override key: the key without +/++ / ~."""
    return key.lstrip("+~")


def distribution(key: str, sweep) -> Any:
    """The Optuna distribution of a parsed Hydra sweep value."""
    import optuna.distributions as d

    tags = set(getattr(sweep, "tags", ()) or ())
    if isinstance(sweep, ChoiceSweep):
        choices = list(sweep.list)
        bad = [c for c in choices if not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ConfigError(f"sweep.params.{key}", bad[0], "choices that are numbers, strings or booleans")
        return d.CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        values = _range_values(sweep)
        if not values:
            raise ConfigError(f"sweep.params.{key}", sweep, "a range with at least one value")
        if all(isinstance(v, int) for v in values):
            if "log" in tags:
                return d.IntDistribution(values[0], values[-1], log=True)
            return d.IntDistribution(values[0], values[-1], step=int(sweep.step))
        return d.FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step))
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not (low < high) or ("log" in tags and low <= 0):
            raise ConfigError(f"sweep.params.{key}", f"interval({low}, {high})", "low < high (and low > 0 with log)")
        if "int" in tags:
            return d.IntDistribution(int(math.ceil(low)), int(math.floor(high)), log="log" in tags)
        return d.FloatDistribution(float(low), float(high), log="log" in tags)
    raise ConfigError(f"sweep.params.{key}", sweep, "choice(...), range(...) or interval(...)")


def _range_values(sweep: RangeSweep) -> list:
    out, v = [], sweep.start
    while (sweep.step > 0 and v < sweep.stop) or (sweep.step < 0 and v > sweep.stop):
        out.append(v)
        v = v + sweep.step
    return out


def split(entries: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(search space {override key: distribution}, fixed overrides ["key=value"])."""
    space, fixed = {}, []
    for key, value in entries.items():
        if isinstance(value, (list, tuple)):
            value = "choice(" + ", ".join(format_value(v) for v in value) + ")"
        text = value if isinstance(value, str) else format_value(value)
        override = _parse(key, text)
        if override.is_sweep_override():
            space[key] = distribution(key, override.value())
        else:
            fixed.append(f"{key}={text}")
    return space, fixed


def parse_arguments(arguments: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Command-line overrides: sweeps join the search space, the rest stay fixed."""
    space, fixed = {}, []
    for arg in arguments:
        key, _, value = arg.partition("=")
        override = _parse(key, value)
        if override.is_sweep_override():
            space[key] = distribution(key, override.value())
        else:
            fixed.append(arg)
    return space, fixed


_PLAIN = re.compile(r"^[A-Za-z0-9_./:-]+$")


def format_value(v: Any) -> str:
    """A value as an override string Hydra reads back as the same value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    if _PLAIN.match(s) and s not in ("null", "true", "false"):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def suggest(trial, space: dict[str, Any]) -> list[str]:
    """Sample the trial's values; return them as overrides."""
    out = []
    for key, dist in space.items():
        out.append(f"{key}={format_value(_suggest(trial, param_name(key), dist))}")
    return out


def _suggest(trial, name: str, dist) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
