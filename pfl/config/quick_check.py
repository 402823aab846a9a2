"""The value checks of `pfl.config.validate`, from the schema cache's rules, without importing a target.

`validate` reads each setting's rule (`setting(1.0, number(ge=0, le=1))`, pfl.config.settings) from the
target's class, which imports torch and Lightning. The rules made by the declarative constructors
(number, integer, boolean, one_of, text, optional) are kept in the schema cache beside the schemas
(pfl.config.schema_cache); `quick_check` applies those to the same values with the same messages, so a
value error (`zeta=2`, `algorithm.beta=-1`) is answered as fast as `--help`. A config it passes still
goes through `validate` (rules with a custom test, relations between keys, the stages, the sweep).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from pfl.config.settings import check_values, rule_of

# the top-level keys with rules (pfl.config.schema.Config), as validate checks them
TOP = ("seed", "replicas", "rounds", "clients_per_round", "zeta", "eval_every", "checkpoint_every", "resume",
       "overwrite", "init_from", "device")
SECTIONS = ("engine", "trainer", "personalization")  # the config's sections with rules of their own


def plain(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def logger_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(option, node) of every selected logger: `logger=[csv,wandb]` gives logger.csv and logger.wandb."""
    node = cfg.get("logger")
    if not isinstance(node, DictConfig):
        return []
    if "_target_" in node:  # a node written in place: `logger={_target_: ...}`
        return [("_here_", node)]
    return [(str(k), v) for k, v in node.items() if isinstance(v, DictConfig) and "_target_" in v]


def target_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(config path, node) of every node that names a `_target_` whose settings a run checks."""
    nodes = [(k, cfg[k]) for k in ("dataset", "model", "algorithm", "client_opt", "server_opt")]
    nodes += [(f"logger.{k}".replace("logger._here_", "logger"), v) for k, v in logger_nodes(cfg)]
    if cfg.personalization.client_opt is not None:
        nodes.append(("personalization.client_opt", cfg.personalization.client_opt))
    nodes += [(f"callbacks.{i}", c) for i, c in enumerate(cfg.get("callbacks") or [])]
    if isinstance(cfg.stages, ListConfig):
        nodes += [(f"stages.{i}.{k}", s[k]) for i, s in enumerate(cfg.stages) if isinstance(s, DictConfig)
                  for k in ("algorithm", "server_opt") if k in s]
    return [(path, node) for path, node in nodes if isinstance(node, DictConfig) and "_target_" in node]


def quick_check(cfg: DictConfig, described: dict[str, dict]) -> None:
    """Raise ConfigError for a value that a described rule refuses. `described`: {"schema" (the top level),
    a section's name or a target: {setting: rule spec or None}} (pfl.config.schema_cache.cached_rules)."""
    def check(name: str, values, prefix: str) -> None:
        found = {k: rule_of(spec) for k, spec in (described.get(name) or {}).items() if spec is not None}
        if found and isinstance(values, dict):
            check_values(None, values, prefix, found)

    check("schema", {k: plain(cfg.get(k)) for k in TOP}, "")
    for section in SECTIONS:
        check(section, plain(cfg.get(section)), section + ".")
    for path, node in target_nodes(cfg):
        values = {k: v for k, v in plain(node).items() if not (k.startswith("_") and k.endswith("_")) and k != "name"}
        check(str(node._target_), values, path + ".")
