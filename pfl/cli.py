"""`python -m pfl`: the Hydra application, with one-line errors for bad input.

Before Hydra runs, the command-line overrides are composed once with Hydra's
compose API; any problem (an unknown option of a group, a misspelt key, a value
of the wrong type or range) is reported as one line naming the key and what is
allowed, and the process exits with status 2, without a traceback.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("pfl")


def _groups() -> dict[str, list[str]]:
    out = {}
    for d in sorted(Path(CONF_DIR).iterdir()):
        if d.is_dir():
            out[d.name] = sorted(p.stem for p in d.glob("*.yaml"))
    return out


def explain(exc: BaseException) -> str:
    """One line for a composition or validation error."""
    from pfl.config_errors import ConfigError

    if isinstance(exc, ConfigError):
        return f"error: {exc}"
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
    if m or "not in struct" in msg:
        key = m.group(1) if m else re.search(r"Key '([^']+)'", msg).group(1)
        parent = key.rsplit(".", 1)[0] if "." in key else None
        hint = f"keys of {parent} are listed by `python -m pfl --cfg job -p {parent}`" if parent else \
            "top-level keys are listed by `python -m pfl --cfg job`"
        return f"error: unknown setting '{key}' ({hint}; use +{key}=... to add a new key)"
    m = re.search(r"Value '([^']*)'.*could not be converted to (\w+)", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        kind = {"float": "a number", "integer": "an integer", "boolean": "true or false"}.get(m.group(2).lower(), m.group(2))
        return f"error: {key.group(1) if key else '?'}={m.group(1)} is not allowed: expected {kind}"
    m = re.search(r"Value '([^']*)' is not a valid bool", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        return f"error: {key.group(1) if key else '?'}={m.group(1)} is not allowed: expected true or false"
    m = re.search(r"Invalid value assigned: (\w+) is not a ListConfig, list or tuple", msg)
    if m:
        key = re.search(r"full_key: (\S+)", msg)
        return f"error: {key.group(1) if key else '?'} must be a list, e.g. [1,5]"
    first = next((ln.strip() for ln in msg.splitlines() if ln.strip()), type(exc).__name__)
    return f"error: {first}"


def _plain_overrides(args: list[str]) -> list[str] | None:
    """The overrides to pre-check, or None when Hydra should handle argv alone."""
    if any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "--version") or
           a.startswith("--info") for a in args):
        return None
    out = []
    for a in args:
        if a.startswith("-"):
            continue
        key = a.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or key.startswith("hydra/"):
            continue
        value = a.split("=", 1)[1] if "=" in a else ""
        # sweeps (a,b / range() / choice() / interval()): check the first choice only
        if re.match(r"^(range|choice|interval|tag|glob|sort|shuffle)\(", value):
            continue
        if "," in value and not value.startswith("[") and not value.startswith("{"):
            a = f"{a.split('=', 1)[0]}={value.split(',')[0]}"
        out.append(a)
    return out


def precheck(args: list[str]) -> str | None:
    """Compose the config with these overrides; return an error line or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pfl.config import register, validate

    overrides = _plain_overrides(args)
    if overrides is None:
        return None
    register()
    try:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        validate(cfg)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        return explain(exc)
    finally:
        GlobalHydra.instance().clear()
    return None


def main() -> None:
    args = sys.argv[1:]
    problem = precheck(args)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    _hydra_main()


def _hydra_main() -> None:
    import hydra
    from omegaconf import DictConfig

    from pfl.config import register

    register()

    @hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
    def app(cfg: DictConfig):
        from pfl.config_errors import ConfigError
        from pfl.engine.summary import format_table
        from pfl.run import train

        try:
            summary = train(cfg)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        print(format_table(summary))
        return objective(cfg, summary)

    app()


def objective(cfg, summary: dict):
    """The value(s) a sweep optimizes (None outside sweeps)."""
    from pfl import sweep_objective

    return sweep_objective.read(cfg, summary)
