"""Where a data set's original files come from, and its decoded cache.

A loader names its original files (`Source`) and a `decode(paths) -> arrays`
function. `decoded(...)` returns the decoded arrays, from the cache when it
can:

    cache/<dataset>/<tag>-<fingerprint>.npz    (compact arrays, second start)

The fingerprint is the archive's published checksum (downloaded data) or the
size and modification time of the files under `dataset.root`, so a changed
source is decoded again. Without a valid .npz, the original files are taken
from `dataset.root` (as extracted files or as the archive) or from the
archive in the cache, downloaded and verified first. Files with published
checksums of their own (CIFAR's pickles) are checked before they are opened.
Extracted files live in a temporary directory of the cache and are deleted
after decoding: the verified archive and the .npz are what is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pfl.data.download import DataError, Remote, save_cache_npz, cache_root, extract, fetch, load_npz, verify

log = logging.getLogger("pfl")

#: bump when a decoder's output changes, so old caches are not reused
FORMAT = 1


@dataclass(frozen=True)
class Source:
    dataset: str  # cache sub-folder and the name in messages
    files: tuple[str, ...]  # base names of the original files the decoder reads
    archive: Remote | None = None  # the canonical archive holding them (None: dataset.root only)
    file_md5: dict[str, str] = field(default_factory=dict)  # published checksums of the files themselves
    subdirs: tuple[str, ...] = ()  # folders under dataset.root where the files may also sit


def fingerprint_files(paths: list[Path]) -> str:
    """A short hash of the files' resolved paths, sizes and modification times."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def find_in_root(root: Path, names: tuple[str, ...], subdirs: tuple[str, ...] = ()) -> dict[str, Path] | None:
    """{name: path} if every name is in root (or one of its subdirs), else None."""
    for d in (root, *(root / s for s in subdirs)):
        if all((d / n).is_file() for n in names):
            return {n: d / n for n in names}
    return None


def _check_files(source: Source, paths: dict[str, Path]) -> None:
    for name, md5 in source.file_md5.items():
        if name in paths:
            verify(paths[name], Remote(name, str(paths[name]), md5=md5))


def _decode_or_explain(source: Source, decode, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """decode(paths); a file that is garbage, empty, truncated or of another layout is one DataError
    naming the files, not a traceback from deep inside h5py or numpy."""
    try:
        return decode(paths)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the reader raised, the files are not what they should be
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        names = ", ".join(str(p) for p in paths.values())
        raise DataError(f"{names}: not readable as {source.dataset} data ({type(exc).__name__}"
                        f"{': ' + first if first else ''}); replace them with good copies of the original files "
                        "(or remove them to download again, where the data set has a download)") from None


def decoded(
    source: Source,
    tag: str,
    decode: Callable[[dict[str, Path]], dict[str, np.ndarray]],
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """The decoded arrays of `source` (see the module docstring)."""
    base = cache_root(cache_dir) / source.dataset
    files = archive = None
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"dataset.root={root} is not a directory", key="dataset.root")
        files = find_in_root(root, source.files, source.subdirs)
        if files is None and source.archive is not None and (root / source.archive.filename).is_file():
            archive = root / source.archive.filename
        if files is None and archive is None:
            want = ", ".join(source.files) + (f" (or the archive {source.archive.filename})" if source.archive else "")
            raise DataError(f"dataset.root={root} does not hold {want} for dataset {source.dataset}", key="dataset.root")
        fp = fingerprint_files(list(files.values())) if files else source.archive.digest[:16]
    else:
        if source.archive is None:
            raise DataError(f"dataset {source.dataset} has no download: set dataset.root to the folder of its files",
                            key="dataset.root")
        fp = source.archive.digest[:16]
    npz = base / f"{tag}-{fp}-v{FORMAT}.npz"
    arrays = load_npz(npz)
    if arrays is not None:
        return arrays

    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the cache is optional, unless a download has to land in it
        if files is None:
            raise DataError(f"the cache folder {base} cannot be written ({exc.strerror or exc}) and dataset "
                            f"{source.dataset} has to be downloaded into it: set PFL_CACHE or dataset.cache_dir to a "
                            "writable folder, or dataset.root to a folder holding its files",
                            key="dataset.cache_dir") from None
    if files is not None:
        _check_files(source, files)
        arrays = _decode_or_explain(source, decode, files)
    else:
        if archive is not None:
            verify(archive, source.archive)
        else:
            archive = fetch(source.archive, base, progress)
        with tempfile.TemporaryDirectory(dir=base, prefix=".decode-") as tmp:
            extracted = extract(archive, list(source.files), Path(tmp))
            _check_files(source, extracted)
            arrays = _decode_or_explain(source, decode, extracted)
    save_cache_npz(npz, **arrays)
    with contextlib.suppress(OSError):  # not cached (pfl.data.download.save_cache_npz warned)
        log.info("decoded %s into %s (%.1f MB)", source.dataset, npz, npz.stat().st_size / 1e6)
    return arrays
