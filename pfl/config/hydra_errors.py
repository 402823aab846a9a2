"""One-line errors from what Hydra and YAML raise, read from the exceptions' own fields where they have them.

- An override Hydra cannot parse (`client_opt.lr==0.1`, `algorithm.local_epochs 5`): Hydra's reason is kept.
- An option a group does not have (`algorithm=fedavgg`): the nearest option is suggested, in every group.
- A YAML file that does not parse: its file, line and the parser's reason.
- An error while composing a config file of the user's (`In 'experiment/mine': ...`): the line for the
  error, then the file it is in.
"""

from __future__ import annotations

import re
from pathlib import Path

from pfl.config.errors import closest

OVERRIDE_SYNTAX = "write KEY=VALUE (e.g. client_opt.lr=0.1; a list: KEY=[a,b]; add a key: +KEY=VALUE)"
IN_FILE = re.compile(r"^In '([^']+)': \w+ raised while composing config:\n", re.S)


def parse_error(exc: BaseException) -> str | None:
    from hydra.errors import OverrideParseException

    if not isinstance(exc, OverrideParseException):
        return None
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("See https://")]
    m = re.match(r"Error parsing override '(.*)'$", lines[0]) if lines else None
    override = m.group(1) if m else getattr(exc, "override", "?")
    reason = "; ".join(lines[1:]) or "not KEY=VALUE"
    return f"error: cannot parse the override '{override}': {reason}; {OVERRIDE_SYNTAX}"


def missing_option(exc: BaseException, groups: dict[str, list[str]]) -> str | None:
    """`algorithm=fedavgg is not an option; did you mean 'fedavg'? choose one of: ...`."""
    from hydra.errors import MissingConfigException

    missing = getattr(exc, "missing_cfg_file", None) if isinstance(exc, MissingConfigException) else None
    if not missing or "/" not in missing:
        return None
    group, value = missing.rsplit("/", 1)
    options = list(getattr(exc, "options", None) or groups.get(group) or [])
    if not options:
        return None
    near = closest(value, options)
    hint = f"did you mean '{near}'? " if near else ""
    return f"error: {group}={value} is not an option; {hint}choose one of: {', '.join(sorted(options))}"


def yaml_error(exc: BaseException) -> str | None:
    """A YAML file that does not parse: `error: FILE line N: REASON (CONTEXT)`."""
    import yaml

    err = next((e for e in _chain(exc) if isinstance(e, yaml.MarkedYAMLError)), None)
    if err is None:
        return None
    mark = err.problem_mark or err.context_mark
    where = f"{mark.name} line {mark.line + 1} column {mark.column + 1}" if mark else "a YAML file"
    context = f" ({err.context})" if err.context else ""
    return f"error: {where}: {err.problem or 'invalid YAML'}{context}; the file is not valid YAML"


def in_config_file(exc: BaseException, conf_dirs: list[Path]) -> tuple[str, str] | None:
    """(the error's text without Hydra's `In 'group/option': ...` line, the file it names), or None."""
    m = IN_FILE.match(str(exc))
    if not m or m.group(1) == "config":
        return None
    name = m.group(1)
    path = next((d / f"{name}.yaml" for d in conf_dirs if (d / f"{name}.yaml").is_file()), None)
    return str(exc)[m.end():], str(path) if path else f"the config '{name}'"


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
