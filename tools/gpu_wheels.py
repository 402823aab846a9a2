"""The Python packages a pfl check on the lent GPU machine needs that its image lacks, as wheels.

    python tools/gpu_wheels.py needed        # name==version per line (the versions of this interpreter)
    python tools/gpu_wheels.py download DIR  # their wheels for CPython 3.12 on x86-64 Linux into DIR

`needed` runs, in a fresh interpreter, what the check runs there (a tiny `pfl.run.train`, the
benchmark's modules, the CUDA tests' modules), maps every imported top-level module to the
distribution that provides it, and keeps those that IMAGE (the machine's package list) lacks.
`download` fetches each as a binary wheel for Python 3.12; a package published only as a source
distribution (antlr4-python3-runtime 4.9.3) is built here with `pip wheel --no-deps`, which must give
a pure-Python wheel (py3-none-any), else it stops.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The lent GPU machine's Python packages (Python 3.12, torch 2.11.0 + CUDA 13, pytorch-lightning
# 2.6.6): the list /work/.library/device/KINDS.md gives for the `nvidia-h200` image.
IMAGE = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec
patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11
py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server
tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq
torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions
typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())

# what the check imports there: a tiny run end to end, the benchmark, the CUDA tests' modules
PROBE = """
import importlib, json, sys, tempfile
from tests.helpers import compose_cfg
from pfl.run import train
with tempfile.TemporaryDirectory() as d:
    train(compose_cfg(["rounds=2", "eval_every=2", "checkpoint_every=1", "engine.backend=vmap"]), d)
for m in ("pfl.bench.gpu", "pfl.bench.engine", "pfl.bench.plain", "pfl.bench.runner", "pytest", "xdist",
          "tests.conftest", "tests.gpu.common", "tests.algorithms.test_contract"):
    importlib.import_module(m)
print(json.dumps(sorted({m.split(".")[0] for m in list(sys.modules)})))
"""
OWN = {"pfl", "tests", "hydra_plugins"}  # the project's own packages travel with the working tree
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def norm(name: str) -> str:
    """A distribution name as the package index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(distributions: set[str], image: frozenset = IMAGE) -> list[str]:
    """The distributions (normalized, sorted) that the image lacks."""
    have = {norm(n) for n in image}
    return sorted({norm(d) for d in distributions} - have)


def imported_distributions(modules: list[str]) -> set[str]:
    """The distributions that provide these top-level modules (the standard library and the project's own left out)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    out = set()
    for m in modules:
        if m in sys.stdlib_module_names or m in OWN or m.startswith("_"):
            continue
        out.update(owners.get(m, []))
    return out


def needed() -> list[str]:
    """name==version of every distribution the check imports that the image lacks."""
    from importlib.metadata import version

    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"})
    if done.returncode != 0:
        raise SystemExit(f"gpu_wheels: the import probe failed:\n{done.stderr[-2000:]}")
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    return [f"{d}=={version(d)}" for d in missing(imported_distributions(modules))]


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download(requirement: str, dest: Path) -> Path:
    """The wheel of `requirement` for CPython 3.12 on x86-64 Linux, in `dest`."""
    before = set(dest.glob("*.whl"))
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    got = _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
               *plat, "-d", str(dest), requirement)
    if got.returncode != 0:  # only a source distribution: build it here, it must be pure Python
        with tempfile.TemporaryDirectory() as tmp:
            src = _pip("download", "--no-deps", "--no-binary=:all:", "-d", tmp, requirement)
            built = src.returncode == 0 and _pip("wheel", "--no-deps", "-w", str(dest), *map(str, Path(tmp).iterdir()))
            if not built or built.returncode != 0:
                raise SystemExit(f"gpu_wheels: no wheel for {requirement}:\n{(got.stderr + src.stderr)[-1500:]}")
    stem = norm(requirement.split("==")[0]).replace("-", "_")  # a wheel already there is not saved again
    new = sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob(f"{stem}-*.whl"))
    if not new:
        raise SystemExit(f"gpu_wheels: pip saved no wheel for {requirement}")
    wheel = new[-1]
    tags = wheel.name[:-4].split("-")[-3:]
    if not (tags[1] in ("none", "abi3", "cp312") and (tags[2] == "any" or "x86_64" in tags[2])):
        raise SystemExit(f"gpu_wheels: {wheel.name} does not install on CPython 3.12 x86-64")
    return wheel


def main(argv: list[str]) -> int:
    if argv[:1] == ["needed"]:
        print("\n".join(needed()))
        return 0
    if len(argv) == 2 and argv[0] == "download":
        dest = Path(argv[1])
        dest.mkdir(parents=True, exist_ok=True)
        for req in needed():
            print(f"{req}: {download(req, dest).name}")
        return 0
    print("usage: python tools/gpu_wheels.py needed | download DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
