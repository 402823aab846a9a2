"""One line for each way composing a config can fail: what is wrong and what is allowed.

`unselected_group` reads the composed config's structure (its group choices, its missing values);
`explain` turns the remaining composition errors (Hydra's and OmegaConf's) into one line: from the
exception's structure where pfl.config.hydra_errors can read it, from its text otherwise, with the
nearest key for a misspelt one.
"""

from __future__ import annotations

import re
from pathlib import Path

from pfl.config.resources import CONF_DIR, SWEEPS_DIR


def _groups() -> dict[str, list[str]]:
    out = {}
    for d in sorted(Path(CONF_DIR).iterdir()):
        if d.is_dir():
            out[d.name] = sorted(p.stem for p in d.glob("*.yaml"))
    out["sweep"] = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))  # the `sweep` group (pfl.sweep.definitions)
    return out


def explain(exc: BaseException, keys_of=None, conf_dirs: list[Path] | None = None) -> str:
    """One line for a composition or validation error. `keys_of(parent)`: the valid keys under
    `parent` ("" for the top level), for a "did you mean" suggestion on an unknown key."""
    from pfl.config import hydra_errors as cli_errors
    from pfl.config.errors import ConfigError, UnknownSetting

    if isinstance(exc, ConfigError):
        return f"error: {exc}"
    structural = (cli_errors.parse_error(exc) or cli_errors.missing_option(exc, _groups())
                  or cli_errors.yaml_error(exc))
    if structural:
        return structural
    in_file = cli_errors.in_config_file(exc, [*(conf_dirs or []), Path(CONF_DIR)])
    if in_file:  # a config file's own mistake: the line for it, and where it is
        return explain(RuntimeError(in_file[0]), keys_of) + f" (in {in_file[1]})"
    msg = str(exc)
    cause = exc.__cause__
    while cause is not None:  # Hydra wraps the informative error ("Error merging override ...")
        msg += "\n" + str(cause)
        cause = cause.__cause__
    m = re.search(r"Could not find '([\w/]+)/([^']+)'", msg)
    if m:
        group, value = m.group(1), m.group(2)
        opts = _groups().get(group, [])
        return f"error: {group}={value} is not an option; choose one of: {', '.join(opts)}"
    m = re.search(r"Could not override '([^']+)'", msg)
    in_node = re.search(r"Key '[^']+' not in '[^']*'\s+full_key: (\S+)", msg)  # set by a config file
    if m or in_node or "not in struct" in msg:
        key = m.group(1) if m else in_node.group(1) if in_node else re.search(r"Key '([^']+)'", msg).group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        candidates = (keys_of(parent) if keys_of else None) or []
        if parent == "trainer":  # any pl.Trainer argument is accepted with a +
            return "error: " + trainer_key_line(key, candidates)
        return f"error: {UnknownSetting(key, None, candidates, listing(parent))}"
    m = re.search(r"Value '([^']*)'.*could not be converted to (\w+)", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        kind = {"float": "a number", "integer": "an integer", "boolean": "true or false"}.get(m.group(2).lower(), m.group(2))
        return f"error: {key.group(1) if key else '?'}={m.group(1)} is not allowed: expected {kind}"
    if "is not a subclass of SweepSettings" in msg:
        return ("error: +sweep=NAME names no sweep definition; choose one of: " + ", ".join(_groups()["sweep"]))
    m = re.search(r"Value '([^']*)' is not a valid bool", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        return f"error: {key.group(1) if key else '?'}={m.group(1)} is not allowed: expected true or false"
    m = re.search(r"Invalid value assigned: (\w+) is not a ListConfig, list or tuple", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        return f"error: {key.group(1) if key else '?'} must be a list, e.g. [a,b]"
    first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(exc).__name__)
    return f"error: {first}"


def trainer_key_line(key: str, keys: list[str]) -> str:
    """`trainer.max_epoch`: not one of trainer's keys; the nearest pl.Trainer argument, given with a +."""
    from pfl.config.errors import closest
    from pfl.config.schema_cache import trainer_arguments

    leaf = key.split(".", 1)[1]
    near = closest(leaf, keys)
    if near:
        return f"unknown setting '{key}'; did you mean 'trainer.{near}'? ({listing('trainer')})"
    arg = closest(leaf, trainer_arguments())
    hint = f"did you mean '+trainer.{arg}=...'? " if arg else ""
    return (f"unknown setting '{key}'; {hint}trainer's keys are {', '.join(keys) or 'listed by --cfg job'}; "
            f"any other pl.Trainer argument is given with a +: +trainer.NAME=VALUE")


def listing(parent: str) -> str:
    """Where the valid keys under `parent` are listed."""
    if parent:
        return f"the keys of {parent} are listed by `python -m pfl --cfg job -p {parent}`"
    return "the top-level keys are listed by `python -m pfl --cfg job`"


def _keys_of(compose, overrides: list[str]):
    """keys_of(parent) for `explain`: the keys of that node in the config composed with the
    group choices of `overrides` only (the node the user meant, without the bad key)."""
    def keys_of(parent: str) -> list[str]:
        from omegaconf import DictConfig

        groups = _groups()
        choices = [o for o in overrides if o.partition("=")[0].lstrip("+~") in groups]
        # without the experiment too: the bad key may be in the preset's own file
        for attempt in (choices, [o for o in choices if o.partition("=")[0].lstrip("+~") != "experiment"]):
            try:
                node = compose("config", overrides=attempt)
                for part in filter(None, parent.split(".")):
                    node = node[int(part)] if part.isdigit() else node[part]
            except Exception:  # noqa: BLE001 - no suggestion then
                continue
            return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        return []

    return keys_of


def unselected_group(compose, overrides: list[str]) -> str | None:
    """An error line when a config group is given (`model=mlp`) or needed but nothing in the composed
    defaults selects it: a data set whose YAML names no default model. Read from the composed config's
    group choices, not from the error's text; None when that is not the problem."""
    from omegaconf import OmegaConf

    groups = _groups()
    chosen = [o for o in overrides if o.partition("=")[0].lstrip("+~") in groups]

    def composed(without: str | None = None):
        try:
            return compose("config", overrides=[o for o in chosen if o != without], return_hydra_config=True)
        except Exception:  # noqa: BLE001 - another problem: explain() names it
            return None

    for o in chosen:
        group = o.partition("=")[0]
        base = composed(without=o) if group in groups else None
        if base is not None and group not in base.hydra.runtime.choices:
            return (f"error: {o}: nothing selects a {group} to replace (dataset={base.hydra.runtime.choices.get('dataset')} "
                    f"names no default {group}); add it with +{o}")
    base = composed()
    for group in groups if base is not None else ():
        if group in base.keys() and OmegaConf.is_missing(base, group):
            return (f"error: {group} is not set (dataset={base.hydra.runtime.choices.get('dataset')} names no default "
                    f"{group}); choose one with +{group}=NAME, NAME one of: {', '.join(groups[group])}")
    return None
