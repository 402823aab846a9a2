"""The config schemas without importing torch or Lightning: a cache keyed by the sources' hashes.

`pfl.config.register` builds the typed schema of every target that conf/ names
by importing it (so torch and Lightning: seconds of CPU), although composing a
config needs only field names, types and defaults. `register` here stores the
same schemas from a JSON description in the cache directory ($PFL_CACHE, else
$XDG_CACHE_HOME/pfl or ~/.cache/pfl; `schemas/`), named by a hash of every
pfl source file, every YAML of the config directory, Python's version and the
versions of the packages whose classes are targets. Any change to one of
those names another file, so a stale description is never read. On a miss
(first use, an edit) it imports the targets as before and writes the
description; a schema it cannot describe exactly (a type or default outside
JSON and plain typing) is never cached: then every call imports, as before.

What composition needs is all it holds: the validation rules of `setting(...)`
(pfl.settings) stay on the classes, and `pfl.config.validate` imports them
when a run starts. So `--help`, `--cfg`, `--info`, shell completion and the
errors found while composing (unknown keys and options, wrong types) answer
without torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional

from pfl.config.resources import CONF_DIR

FORMAT = 2  # bump when the description's layout changes
KEEP = 8  # descriptions kept (of the newest sources: a few checkouts or branches side by side)
PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf")
_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "Any": Any, "Optional": Optional, "List": List,
          "Dict": Dict, "NoneType": type(None)}
_DONE: set[str] = set()


class Undescribable(ValueError):
    """A schema that a JSON description cannot reproduce exactly."""


def cache_dir() -> Path:
    if os.environ.get("PFL_CACHE"):
        return Path(os.environ["PFL_CACHE"]).expanduser() / "schemas"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pfl" / "schemas"


def fingerprint(conf_dir: Path) -> str:
    """A hash of everything a schema is made from."""
    from importlib import metadata

    h = hashlib.sha256(f"{FORMAT} {sys.version}".encode())
    pkg = Path(__file__).resolve().parents[1]  # the whole pfl package
    for root, pattern in ((pkg, "*.py"), (conf_dir, "*.yaml")):
        for path in sorted(root.rglob(pattern)):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name in PACKAGES:
        try:
            h.update(f"{name}={metadata.version(name)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name}=-".encode())
    return h.hexdigest()[:24]


# -- describe a dataclass schema as JSON, and build it back ----------------------------

def _type_text(t) -> str:
    text = t.__name__ if t in (int, float, bool, str) else repr(t).replace("typing.", "")
    if _type_of(text) != t:
        raise Undescribable(f"type {t!r}")
    return text


def _type_of(text: str):
    return eval(text, {"__builtins__": {}}, _NAMES)  # noqa: S307 - only the names above; text written by _type_text


def _plain_value(v):
    if json.loads(json.dumps(v)) != v or isinstance(v, tuple):
        raise Undescribable(f"default {v!r}")
    return v


def describe(cls) -> dict:
    """{name, fields: [[name, type, default kind, default]]}; a nested dataclass is described in place."""
    out, hints = [], typing.get_type_hints(cls)  # real types where the module postpones annotations
    for f in dataclasses.fields(cls):
        ftype = hints.get(f.name, f.type)
        if f.default is not dataclasses.MISSING:
            kind, value = "value", f.default
        elif f.default_factory is not dataclasses.MISSING:
            kind, value = "factory", f.default_factory()
        else:
            kind, value = "required", None
        if dataclasses.is_dataclass(value):
            if type(value) is not ftype:
                raise Undescribable(f"field {f.name}")
            out.append([f.name, "dataclass", "nested", describe(type(value))])
            continue
        out.append([f.name, _type_text(ftype), kind, _plain_value(value)])
    return {"name": cls.__name__, "kw_only": any(f.kw_only is True for f in dataclasses.fields(cls)), "fields": out}


def build(desc: dict) -> type:
    fields = []
    for name, type_text, kind, value in desc["fields"]:
        if kind == "nested":
            nested = build(value)
            fields.append((name, nested, dataclasses.field(default_factory=nested)))
        elif kind == "required":
            fields.append((name, _type_of(type_text)))
        elif isinstance(value, (list, dict)):
            fields.append((name, _type_of(type_text), dataclasses.field(default_factory=lambda v=value: json.loads(json.dumps(v)))))
        else:
            fields.append((name, _type_of(type_text), dataclasses.field(default=value)))
    return dataclasses.make_dataclass(desc["name"], fields, kw_only=desc.get("kw_only", False))


TRAINER_KEY = "__trainer_arguments__"
_TRAINER: list[str] = []
RULES_KEY = "__rules__"  # {"schema" | a section | a target: {setting: rule spec or None}} (pfl.config.quick_check)
_RULES: dict[str, dict] = {}


def cached_rules() -> dict[str, dict] | None:
    """The rules read from the cache by `register` in this process (None: the schemas were imported)."""
    return _RULES or None


def _rules(entries: dict[str, type]) -> dict[str, dict]:
    """The described rules of the top level, its sections and every target; a rule whose description does
    not rebuild it (the same allowed values) is None: validate checks it."""
    from pfl.config import schema as config
    from pfl.config.settings import described_rules, locate, rule_of, rules

    objects = {"schema": config.Config, "engine": config.EngineConfig, "trainer": config.TrainerConfig,
               "personalization": config.PersonalizationSettings}
    for name in entries:
        if name != "schema":
            try:
                objects[name] = locate(name)
            except Exception:  # noqa: BLE001 - as _entries
                continue
    out = {}
    for name, obj in objects.items():
        found, specs = rules(obj), {}
        for key, spec in described_rules(obj).items():
            try:
                spec = json.loads(json.dumps(spec)) if spec is not None else None
                specs[key] = spec if spec is not None and rule_of(spec).allowed == found[key].allowed else None
            except (TypeError, ValueError, KeyError):
                specs[key] = None
        out[name] = specs
    return out


def trainer_arguments() -> list[str]:
    """pl.Trainer's argument names (from the cache after `register`, else from Lightning: +trainer.NAME)."""
    if not _TRAINER:
        import inspect

        from pytorch_lightning import Trainer

        _TRAINER[:] = sorted(n for n in inspect.signature(Trainer.__init__).parameters if n != "self")
    return list(_TRAINER)


# -- register ---------------------------------------------------------------------------

def _entries(conf_dir: Path) -> dict[str, type]:
    """What pfl.config.register stores: name -> schema class (imports every target)."""
    from pfl.config import schema as config

    config.register(conf_dir)
    out = {"schema": config.Config}
    for group_dir in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        for path in sorted(group_dir.glob("*.yaml")):
            for target in config.schema_targets(path):
                try:
                    out[target] = config._schema(target, group_dir.name)
                except Exception:  # noqa: BLE001 - as pfl.config.register: composing reports the missing schema
                    continue
    return out


def register(conf_dir: str | Path | None = None) -> bool:
    """Store the schemas of `conf_dir` (default: CONF_DIR) in Hydra's ConfigStore, from the cache when it
    has them. True: from the cache (nothing imported)."""
    from hydra.core.config_store import ConfigStore

    conf = Path(conf_dir or CONF_DIR).resolve()
    if str(conf) in _DONE and "schema.yaml" in ConfigStore.instance().repo:
        return True
    path = cache_dir() / f"{fingerprint(conf)}.json"
    try:
        described = json.loads(path.read_text())
    except (OSError, ValueError):
        described = None
    cs = ConfigStore.instance()
    if described is not None:
        _TRAINER[:] = described.pop(TRAINER_KEY, None) or []
        _RULES.clear()
        _RULES.update(described.pop(RULES_KEY, None) or {})
        for name, desc in described.items():
            cs.store(name=name, node=build(desc), **({} if name == "schema" else {"provider": "pfl"}))
        _DONE.add(str(conf))
        return True
    entries = _entries(conf)  # stores them too
    try:
        text = json.dumps({TRAINER_KEY: trainer_arguments(), RULES_KEY: _rules(entries),
                           **{name: describe(cls) for name, cls in entries.items()}})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        for old in sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-KEEP]:
            old.unlink(missing_ok=True)  # descriptions of earlier sources
    except (Undescribable, OSError):  # not describable, or no writable cache: import every time
        pass
    return False
