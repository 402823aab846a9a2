"""The command line's last line of defence: an exception that no specific handler knows becomes one
line on the terminal, and its traceback goes to a log file that the line names (exit status 1).

The file is the run's own log (`<run dir>/pfl.log`, Hydra's file handler) when there is one, else
`pfl-error-<pid>.log` in the temporary folder. Known failures keep their own messages: this is only
reached by what nothing else caught.
"""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from pathlib import Path


def log_file() -> Path:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return Path(tempfile.gettempdir()) / f"pfl-error-{os.getpid()}.log"


def unexpected(exc: BaseException) -> str:
    """Write exc's traceback to the log file; the one line to print."""
    path = log_file()
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        with open(path, "a") as f:
            f.write(f"unexpected error, traceback:\n{text}\n")
        where = f"the traceback is in {path}"
    except OSError as err:
        where = f"its traceback could not be written to {path}: {err.strerror or err}"
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"error: unexpected {type(exc).__name__}{': ' + first[:300] if first else ''} ({where}; please report it)"
