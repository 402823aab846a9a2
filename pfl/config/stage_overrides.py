"""Overrides that a staged preset cannot honour, refused in one line.

With `stages` set (experiment=personalized_fedavg), every stage sets its own
rounds, algorithm and server optimizer (pfl.run.build_stages), so a
command-line `rounds=3`, `algorithm.local_epochs=5` or `server_opt=adam` would
change nothing in the run. It is refused before the run starts, naming the
stages that own the key and the per-stage override that does what was meant.
"""

from __future__ import annotations

OWNED = ("rounds", "algorithm", "server_opt")  # what each stage sets for itself


def _stage(i: int, node) -> str:
    name = node.get("name") or str(node.get("algorithm", {}).get("_target_", "?")).rsplit(".", 1)[-1].lower()
    return f"{i} '{name}'"


def problem(overrides: list[str], cfg) -> str | None:
    """An error line for the first override of a key the stages own, or None."""
    stages = cfg.get("stages")
    if not stages:
        return None
    preset = next((o for o in overrides if o.lstrip("+~").partition("=")[0] == "experiment"), "the config's stages")
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        root, _, rest = key.partition(".")
        if root not in OWNED:
            continue
        if root == "rounds":
            owners = ", ".join(f"stage {_stage(i, s)}: {s.get('rounds')}" for i, s in enumerate(stages))
            hint = f"stages.N.rounds={value} (N: 0..{len(stages) - 1})"
        elif rest:  # a key inside the node: the stages whose node has it
            leaf = rest.split(".")[0]
            have = [i for i, s in enumerate(stages) if leaf in (s.get(root) or {})]
            owners = ", ".join(f"stage {_stage(i, stages[i])}" for i in (have or range(len(stages))))
            hint = " or ".join(f"stages.{i}.{key}={value}" for i in (have or [0]))
        else:  # a group choice: the stages set whole nodes
            owners = ", ".join(f"stage {_stage(i, s)}: {s.get(root, {}).get('_target_', '?')}" for i, s in enumerate(stages))
            hint = f"stages.N.{root}.KEY=VALUE"
        return (f"error: {override} would be ignored: with {preset} each stage sets its own {root} ({owners}); "
                f"override it per stage, e.g. {hint}")
    return None
