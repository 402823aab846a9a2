"""Make pfl's Optuna sweeper known to Hydra however pfl was installed.

Hydra finds plugins by listing the folders of the namespace package
`hydra_plugins` (pkgutil over `hydra_plugins.__path__`). A wheel or a
`pip install git+...` puts `hydra_plugins/pfl_optuna_sweeper` into
site-packages, where that listing sees it; an editable install made by
setuptools maps modules through an import hook instead, and the listing sees
the plugin only when the folder `hydra_plugins` itself is mapped (pyproject.toml
lists it for that). For an install where it is not (an editable install made
before that, or another build backend), `ensure_registered()` imports the
plugin by name and registers its class with Hydra's public
`Plugins.register`, before Hydra looks for it; without hydra-optuna-sweeper
installed, that plugin's class name (`_target_` of YAMLs written for it) maps
to pfl's sweeper too. Importing the plugin also
stores the `sweep` group (sweeps/*.yaml) and `hydra/sweeper=pfl_optuna|optuna`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

MODULE = "hydra_plugins.pfl_optuna_sweeper.pfl_optuna_sweeper"
UPSTREAM = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"  # hydra-optuna-sweeper's class


def listed_by_hydra() -> bool:
    """Whether Hydra's plugin scan (pkgutil over hydra_plugins.__path__) sees the plugin's package."""
    try:
        import hydra_plugins
    except ImportError:
        return False
    return any(m.name == "pfl_optuna_sweeper" for m in pkgutil.iter_modules(list(hydra_plugins.__path__)))


def ensure_registered() -> bool:
    """Import the sweeper plugin and register it with Hydra unless Hydra's scan finds it. False: no plugin."""
    try:
        module = importlib.import_module(MODULE)
    except ImportError:
        return False
    from hydra.core.plugins import Plugins

    if not listed_by_hydra():
        Plugins.instance().register(module.PflOptunaSweeper)
    if importlib.util.find_spec(UPSTREAM.rsplit(".", 2)[0]) is None:
        # a YAML written for hydra-optuna-sweeper names its class (`_target_: ...OptunaSweeper`, as
        # lightning-hydra-template's do): without that plugin installed, the name builds pfl's sweeper
        Plugins.instance().class_name_to_class.setdefault(UPSTREAM, module.PflOptunaSweeper)
    return True
