"""Downloads, checksums, safe extraction and the cache directory.

Real data sets come from their canonical URLs into a cache directory
(`dataset.cache_dir`, else `$PFL_CACHE`, else `$XDG_CACHE_HOME/pfl` or
`~/.cache/pfl`), never into the source tree. Every rule here protects the
next start from a bad file:

- a download streams into `<name>.part-<pid>` beside its final path and is
  renamed (`os.replace`, atomic) only after its length and published checksum
  match; on any failure the partial file is deleted;
- a cached file whose checksum does not match is never used (one clear line,
  `DataError`);
- archives are extracted member by member after checking each name (no
  absolute paths, no `..`, no links or devices), into a temporary directory;
- with no network, the error names the file, the URL and where to put a copy.

`DataError` is a `ConfigError`, so `python -m pfl` prints it as one line and
exits with status 2.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pfl.config.errors import ConfigError

log = logging.getLogger("pfl")

CHUNK = 1 << 20


class DataError(ConfigError):
    """A data file is missing, unreachable or corrupted; the message says what to do."""

    def __init__(self, message: str, key: str = "dataset"):
        self.key, self.value, self.allowed = key, None, message
        ValueError.__init__(self, message)


@dataclass(frozen=True)
class Remote:
    """A file at a canonical URL with its published checksum (sha256 or md5)."""

    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None

    def __post_init__(self):
        if (self.sha256 is None) == (self.md5 is None):
            raise ValueError(f"{self.filename}: give exactly one of sha256 / md5")

    @property
    def algorithm(self) -> str:
        return "sha256" if self.sha256 else "md5"

    @property
    def digest(self) -> str:
        return self.sha256 or self.md5  # type: ignore[return-value]


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: the argument, else $PFL_CACHE, else the user's cache."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("PFL_CACHE"):
        return Path(os.environ["PFL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pfl"


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, remote: Remote) -> None:
    """Raise DataError unless `path` has the published checksum of `remote`."""
    got = file_digest(path, remote.algorithm)
    if got != remote.digest:
        raise DataError(
            f"{path} is corrupted or incomplete ({remote.algorithm} {got}, expected {remote.digest}); "
            f"delete it to download again, or replace it with a good copy of {remote.url}"
        )


def fetch(remote: Remote, directory: Path, progress: bool = True, timeout: float = 60.0) -> Path:
    """`directory/remote.filename`, verified; downloaded first if absent."""
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / remote.filename
    if dest.is_file():
        verify(dest, remote)
        return dest
    log.info("downloading %s from %s", remote.filename, remote.url)
    _download(remote, dest, progress, timeout)
    return dest


def _download(remote: Remote, dest: Path, progress: bool, timeout: float) -> None:
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    manual = f"download it yourself and put it at {dest} (or point dataset.root at a folder holding it)"
    h = hashlib.new(remote.algorithm)
    received = 0
    try:
        try:
            response = urllib.request.urlopen(remote.url, timeout=timeout)  # noqa: S310 - fixed https URLs
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"cannot download {remote.filename} from {remote.url} ({reason}); {manual}") from None
        with response, open(tmp, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            bar = _progress_bar(remote.filename, total, progress)
            try:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except Exception as exc:  # noqa: BLE001 - http.client.IncompleteRead, resets, timeouts
                        raise DataError(
                            f"download of {remote.filename} from {remote.url} broke off after {received} bytes "
                            f"({type(exc).__name__}); run again, or {manual}"
                        ) from None
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
            finally:
                bar.close()
        if total is not None and received != total:
            raise DataError(
                f"download of {remote.filename} from {remote.url} is truncated ({received} of {total} bytes); "
                f"run again, or {manual}"
            )
        if h.hexdigest() != remote.digest:
            raise DataError(
                f"download of {remote.filename} from {remote.url} does not match its published {remote.algorithm} "
                f"(got {h.hexdigest()}, expected {remote.digest}); nothing was kept; run again, or {manual}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _progress_bar(name: str, total: int | None, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal, silent in logs and tests
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=None if enabled else True, leave=False)


def _safe_member(member: tarfile.TarInfo) -> bool:
    """A relative name without `..`, drive letters or backslash tricks."""
    name = member.name
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


def extract(archive: Path, names: list[str], dest: Path) -> dict[str, Path]:
    """Extract the members whose base names are `names` into `dest`.

    Returns {name: path}. Refuses archives holding unsafe member names, links
    or special files among the wanted members; raises DataError if a wanted
    member is missing. Members are written under a temporary directory and
    moved into place one by one with os.replace.
    """
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive} is not a readable archive ({exc}); delete it and run again") from None
    with tar, tempfile.TemporaryDirectory(dir=dest, prefix=".extract-") as tmp:
        try:
            for member in tar:
                base = Path(member.name).name
                if base not in names or base in found:
                    continue
                if not _safe_member(member):
                    raise DataError(f"{archive} holds an unsafe member name {member.name!r}; refusing to extract it")
                if not member.isfile():
                    raise DataError(f"{archive}: member {member.name!r} is not a regular file; refusing to extract it")
                src = tar.extractfile(member)
                target = Path(tmp) / base
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                found[base] = target
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive} is damaged ({type(exc).__name__}: {exc}); delete it and run again") from None
        missing = [n for n in names if n not in found]
        if missing:
            raise DataError(f"{archive} does not contain {', '.join(missing)}")
        out = {}
        for base, path in found.items():
            os.replace(path, dest / base)
            out[base] = dest / base
    return out


def atomic_save_npz(path: Path, **arrays) -> None:
    """np.savez into `path` through a temporary file and os.replace."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a cache file is an ordinary file
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_cache_npz(path: Path, **arrays) -> None:
    """atomic_save_npz, but a cache that cannot be written (an unwritable PFL_CACHE, a full disk) is only
    a warning: the data are decoded again next time."""
    try:
        atomic_save_npz(path, **arrays)
    except OSError as exc:
        log.warning("decoded data not cached in %s (%s); set PFL_CACHE or dataset.cache_dir to a writable folder "
                    "to keep them", path.parent, exc.strerror or exc)


def load_npz(path: Path) -> dict | None:
    """The arrays of a cached .npz, or None (and the file removed) if it is unreadable."""
    import numpy as np

    try:
        if not path.is_file():
            return None
    except OSError:  # an unreadable cache folder: no cache
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any damage means: rebuild
        log.warning("cached %s is unreadable (%s): rebuilding it", path, type(exc).__name__)
        path.unlink(missing_ok=True)
        return None
