"""Many runs of `trainer.devices=2` in the same two processes (tests/engine/test_distributed.py).

    python -m tests.helpers.two_ranks <spec.json>

`spec.json` is {"root": <folder>, "runs": [[name, [override, ...]], ...]}: each run is
`pfl.run.train(compose_cfg(overrides + ["trainer.devices=2"]), root / name)`, one after another.
The first run's Trainer starts rank 1 by running this same command again (Lightning's subprocess
launcher, `LOCAL_RANK=1`); rank 1 then goes through the same list, so both ranks take part in every run
and the process group set up for the first run serves the others. One interpreter start per rank for
the whole list instead of one per run: the start (torch, Lightning, Hydra imports) costs more than a
tiny run. Rank 0 writes each run's summary.json, which the test compares with one process's, and rank 1
its own summary beside it (rank1.json).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pfl.run import train
from tests.helpers import compose_cfg


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    root = Path(spec["root"])
    for name, overrides in spec["runs"]:
        summary = train(compose_cfg([*overrides, "trainer.devices=2"], tiny=False), root / name)
        rank = int(os.environ.get("LOCAL_RANK", "0"))  # set by Lightning's launcher once the first run started
        if rank:  # proof that this rank ran, and what it computed
            (root / name / f"rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1])
