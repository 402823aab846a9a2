"""The layers hold: the engine never sees a config, and no module imports a layer above its own.

Read from the source (`ast`), so the test costs no imports. Layers, bottom up:
declarations (pfl.config.errors/settings/resources/sweep) < the functional core
(task, rng, aggregate, optim, execution, chunking, models, data, algorithms,
evaluation) < engine < the config builders (pfl.config.*) < run, cli, sweep, bench, report.
"""

from __future__ import annotations

import ast
from pathlib import Path

PFL = Path(__file__).resolve().parents[2] / "pfl"
DECLARATIONS = {"pfl.config.errors", "pfl.config.settings", "pfl.config.resources", "pfl.config.sweep"}
CORE = ("pfl.task", "pfl.rng", "pfl.aggregate", "pfl.optim", "pfl.execution", "pfl.chunking", "pfl.models",
        "pfl.data", "pfl.algorithms", "pfl.evaluation")
TOP = ("pfl.run", "pfl.cli", "pfl.sweep", "pfl.bench", "pfl.report", "pfl.__main__", "pfl.hydra_plugin",
       "pfl.schema_cache")


def layer(module: str) -> int:
    if module in DECLARATIONS or module == "pfl.config":
        return 0
    if module.startswith(CORE):
        return 1
    if module.startswith("pfl.engine"):
        return 2
    if module.startswith("pfl.config"):
        return 3
    if module.startswith(TOP):
        return 4
    return 0  # pfl/__init__.py


def module_name(path: Path) -> str:
    parts = path.relative_to(PFL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)]
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if node.module == "pfl.config"]
    return out


def test_engine_never_sees_a_config():
    found = [f"{p.relative_to(PFL.parent)}:{line}: {name}" for p in sorted((PFL / "engine").rglob("*.py"))
             for line, name in imports(p) if name.split(".")[0] in ("omegaconf", "hydra")]
    found += [f"{p.relative_to(PFL.parent)}: DictConfig" for p in sorted((PFL / "engine").rglob("*.py"))
              if "DictConfig" in p.read_text()]
    assert not found, "the engine reads a built Experiment, never the config:\n" + "\n".join(found)


def test_no_module_imports_a_layer_above_its_own():
    found = []
    for path in sorted(PFL.rglob("*.py")):
        own = module_name(path)
        for line, name in imports(path):
            if name.startswith("pfl") and layer(name) > layer(own):
                found.append(f"{path.relative_to(PFL.parent)}:{line}: {own} (layer {layer(own)}) imports {name} "
                             f"(layer {layer(name)})")
    assert not found, "\n".join(found)


def test_the_layer_check_can_fail(tmp_path):
    assert layer("pfl.engine.module") > layer("pfl.algorithms.base") and layer("pfl.config.schema") > layer("pfl.engine")
    bad = tmp_path / "bad.py"
    bad.write_text("from omegaconf import DictConfig\nimport pfl.config.schema\n")
    assert [n for _, n in imports(bad)] == ["omegaconf", "pfl.config.schema"]


def test_the_summed_memory_path_is_declared():
    """round.py sums Δ as clients finish only for algorithms whose Δ is the mean of the updates."""
    import pytest

    from pfl.algorithms.fedavg import FedAvg
    from pfl.algorithms.scaffold import SCAFFOLD
    from pfl.algorithms.base import Algorithm
    from pfl.engine.round import reduces_by_sum

    assert FedAvg.mean_of_updates and reduces_by_sum(FedAvg()) and not SCAFFOLD.mean_of_updates

    class OwnMean(Algorithm):
        def aggregate(self, updates, state):
            return super().aggregate(updates, state)

    assert OwnMean.mean_of_updates is False  # derived: it overrides aggregate
    with pytest.raises(TypeError, match="mean_of_updates=True"):
        class Wrong(Algorithm):
            mean_of_updates = True

            def aggregate(self, updates, state):
                return {}
