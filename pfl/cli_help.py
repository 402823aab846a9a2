"""`python -m pfl --help` in a fraction of a second, as Hydra's own help prints it.

Hydra's `--help` lists the options of every config group by building a fresh
copy of its whole config repository per group (about a hundred deep copies of
every stored schema: seconds of CPU). This prints the same page, Hydra's
`hydra.help.template` with its header, groups, config and footer, from one
composition: the groups are the folders of conf/ and the `sweep` definitions
(pfl.cli's listing). Arguments other than overrides (`--config-dir`, ...) are
left to Hydra's help.
"""

from __future__ import annotations

import copy
import string


def fast_help_applies(args: list[str]) -> bool:
    flags = [a for a in args if a.startswith("-")]
    return bool(flags) and all(a in ("--help", "-h") for a in flags)


def app_help(args: list[str], conf_dir: str, groups: dict[str, list[str]]) -> str:
    """The page Hydra prints for `--help` with these overrides."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf, flag_override

    overrides = [a for a in args if not a.startswith("-")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    help_cfg = cfg.hydra.help
    job = copy.deepcopy(cfg)
    with flag_override(job, ["struct", "readonly"], [False, False]):
        del job["hydra"]
    listing = "".join(f"{g}: {', '.join(opts)}\n" for g, opts in sorted(groups.items()) if opts)
    return string.Template(help_cfg.template).substitute(
        FLAGS_HELP=Hydra.format_args_help(get_args_parser()),
        HYDRA_CONFIG_GROUPS="(python -m pfl --hydra-help)",
        APP_CONFIG_GROUPS=listing,
        CONFIG=OmegaConf.to_yaml(job, resolve=False),
    )
