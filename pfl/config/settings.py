"""Settings declared once: default, type and allowed values in one place.

A class's settings are dataclass fields made with `setting(default, rule)`;
a function's (a data set loader's) are its parameters, with the rule in the
annotation: `alpha: Annotated[float, number(ge=0)] = 1.0`. From that one
declaration:

- `check_settings(obj)` validates a dataclass when it is constructed
  (`Settings.__post_init__`), naming the key with the class's `config_path`;
- `validate_node(node, path)` validates a composed config node against its
  `_target_`, naming the real config path (`stages.1.algorithm.local_steps`);
- `schema(target)` is the typed Hydra structured config (the class's or the
  function's defaults) that conf/<group>/<option>.yaml extends with
  `defaults: [/<target>@_here_]` (pfl.config.register stores it).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pfl.config.errors import ConfigError, UnknownSetting, is_int, is_number

EMPTY = inspect.Parameter.empty
REQUIRED = "???"  # OmegaConf's MISSING: the YAML must set it


@dataclass(frozen=True)
class Rule:
    """`test(value)` (or `test(value, others)` when `relation`) must hold; `allowed` says what is."""

    test: Callable[..., bool]
    allowed: str
    relation: bool = False
    spec: Optional[tuple] = None  # the constructor and its arguments (JSON: the schema cache); None: a custom test

    def ok(self, value, others: dict) -> bool:
        try:
            return bool(self.test(value, others) if self.relation else self.test(value))
        except (TypeError, ValueError):
            return False


def _interval(ge, gt, le, lt) -> str:
    lo, hi = (ge, "[") if ge is not None else (gt, "("), (le, "]") if le is not None else (lt, ")")
    if lo[0] is not None and hi[0] is not None:
        return f" in {lo[1]}{lo[0]}, {hi[0]}{hi[1]}"
    if lo[0] is not None:
        return f" {'>=' if ge is not None else '>'} {lo[0]}"
    if hi[0] is not None:
        return f" {'<=' if le is not None else '<'} {hi[0]}"
    return ""


def _within(v, ge, gt, le, lt) -> bool:
    return ((ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le) and (lt is None or v < lt))


def number(ge=None, gt=None, le=None, lt=None) -> Rule:
    return Rule(lambda v: is_number(v) and _within(v, ge, gt, le, lt), "a number" + _interval(ge, gt, le, lt),
                spec=("number", ge, gt, le, lt))


def integer(ge=None, gt=None, le=None, lt=None, note: str = "") -> Rule:
    return Rule(lambda v: is_int(v) and _within(v, ge, gt, le, lt),
                "an integer" + _interval(ge, gt, le, lt) + (f" ({note})" if note else ""),
                spec=("integer", ge, gt, le, lt, note))


def boolean() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false", spec=("boolean",))


def one_of(*values) -> Rule:
    plain = all(v is None or isinstance(v, (str, int, float, bool)) for v in values)
    return Rule(lambda v: v in values, " or ".join(map(str, values)), spec=("one_of", *values) if plain else None)


def text(example: str = "") -> Rule:
    return Rule(lambda v: isinstance(v, str) and v != "", "a non-empty string" + (f", e.g. {example}" if example else ""),
                spec=("text", example))


def optional(rule: Rule) -> Rule:
    """None, or what `rule` allows."""
    return Rule(lambda v, o: v is None or rule.ok(v, o), "null or " + rule.allowed, relation=True,
                spec=("optional", rule.spec) if rule.spec else None)


def rule_of(spec) -> Rule:
    """The Rule that `spec` (a Rule's `spec`, as JSON gives it back) describes."""
    name, *args = spec
    if name == "optional":
        return optional(rule_of(args[0]))
    return {"number": number, "integer": integer, "boolean": boolean, "one_of": one_of, "text": text}[name](*args)


def relation(test: Callable[[Any, dict], bool], allowed: str) -> Rule:
    """A rule that reads the other settings: `test(value, others)`."""
    return Rule(test, allowed, relation=True)


def setting(default=dataclasses.MISSING, rule: Rule | None = None, *, check: Callable[[Any], bool] | None = None,
            allowed: str | None = None, default_factory=dataclasses.MISSING) -> Any:
    """A dataclass field with its allowed values: `setting(5, integer(ge=1))`
    or `setting(5, check=lambda v: ..., allowed="an integer >= 1")`."""
    if rule is None and check is not None:
        rule = Rule(check, allowed or "another value")
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"rule": rule} if rule else {})


# -- reading the declarations --------------------------------------------------

def locate(target: str):
    from hydra._internal.utils import _locate

    return _locate(target)


def _hints(obj) -> dict:
    fn = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no types, no rules
        return {}


def rules(obj) -> dict[str, Rule]:
    """{setting name: Rule} of a settings dataclass or a function / class constructor."""
    if dataclasses.is_dataclass(obj):
        return {f.name: f.metadata["rule"] for f in dataclasses.fields(obj) if "rule" in f.metadata}
    out = {}
    for name, hint in _hints(obj).items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, Rule):
                out[name] = meta
    return out


def parameters(obj) -> dict[str, Any] | None:
    """{name: default (EMPTY if required)} of what a config node may set; None: anything (**kwargs)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING else EMPTY)
                for f in dataclasses.fields(obj) if f.init}
    sig = inspect.signature(obj)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n: p.default for n, p in sig.parameters.items()
            if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def described_rules(obj) -> dict[str, Optional[tuple]]:
    """{setting name: its rule's spec, or None for a custom test} (what the schema cache keeps)."""
    return {name: rule.spec for name, rule in rules(obj).items()}


def check_values(obj, values: dict, prefix: str, found: dict[str, Rule] | None = None) -> None:
    """Raise ConfigError for the first value its rule does not allow (keys: prefix + name); `found`: the
    rules to use instead of obj's (rebuilt from the schema cache)."""
    for name, rule in (rules(obj) if found is None else found).items():
        if name in values and not rule.ok(values[name], values):
            raise ConfigError(prefix + name, values[name], rule.allowed)


def check_settings(obj) -> None:
    """Validate a settings dataclass instance (at construction, from Python or from a config)."""
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    check_values(type(obj), values, getattr(obj, "config_path", "") + ".")


class Settings:
    """Mixin: dataclasses validate their `setting(...)` fields when constructed."""

    config_path = "settings"  # the key prefix in errors when built from Python (a config names the real path)

    def __post_init__(self):
        check_settings(self)


def checked(prefix: str):
    """Validate a function's annotated parameters on every call (a data set loader: prefix "dataset")."""
    def wrap(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            check_values(fn, dict(bound.arguments), prefix + ".")
            return fn(*args, **kwargs)

        return call

    return wrap


def validate_node(node: dict, path: str, drop=("name",)) -> None:
    """Check a resolved config node {_target_, ...}: its target exists, its keys are
    settings of the target, and their values are allowed (keys named `path.key`).
    `drop`: keys the config carries beside the settings (a data set's name)."""
    target = node.get("_target_")
    try:
        obj = locate(target)
    except Exception:  # noqa: BLE001 - any import failure is a bad _target_
        raise ConfigError(f"{path}._target_", target, "an importable class or function") from None
    params = parameters(obj)
    values = {k: v for k, v in node.items() if not (k.startswith("_") and k.endswith("_")) and k not in drop}
    if params is not None:
        for k in values:
            if k not in params:
                names = ", ".join(p for p in params) or "none"
                raise UnknownSetting(f"{path}.{k}", values[k], list(params), f"the settings of {target}: {names}")
    check_values(obj, values, f"{path}.")


# -- typed schemas for Hydra's ConfigStore --------------------------------------

_PLAIN = (int, float, bool, str)


def _config_type(hint) -> Any:
    """The annotation as a type OmegaConf can enforce (Any when it cannot)."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if hint in _PLAIN:
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and rest[0] in _PLAIN:
            return Optional[rest[0]]
    if origin is list and args and args[0] in _PLAIN:
        return typing.List[args[0]]
    return Any


def schema(target: str, exclude: tuple[str, ...] = (), extra: dict[str, type] | None = None) -> type:
    """A dataclass `{_target_, <each setting with its type and default>}` for the ConfigStore.

    `exclude`: arguments supplied at run time, not settings (a model's num_classes).
    `extra`: keys the config carries beside the target's settings (a data set's name).
    """
    obj = locate(target)
    hints = _hints(obj)
    params = parameters(obj)
    if params is None:  # **kwargs too (Lightning's loggers): the named arguments are the settings
        params = {n: p.default for n, p in inspect.signature(obj).parameters.items()
                  if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    fields: list[tuple] = [("_target_", str, dataclasses.field(default=target))]
    for key, typ in (extra or {}).items():
        fields.append((key, typ, dataclasses.field(default=REQUIRED)))
    for name, default in params.items():
        if name in exclude or default is EMPTY:
            continue
        typ = _config_type(hints.get(name, Any))
        if isinstance(default, (list, tuple, dict)):
            f = dataclasses.field(default_factory=(lambda d=default: dict(d) if isinstance(d, dict) else list(d)))
        else:
            f = dataclasses.field(default=default)
        fields.append((name, typ, f))
    return dataclasses.make_dataclass(target.replace(".", "_") + "_schema", fields, kw_only=True)
