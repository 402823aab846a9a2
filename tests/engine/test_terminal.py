"""The terminal during a run: log lines go above the progress bar, and Ctrl-C's stop message starts on a line
of its own below the bars, instead of being spliced into the bar's line (what the terminal showed:
`rounds:  40%|####  | 4/10 ^Cstopped at ...`)."""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import sys
import time

import pytest
from tqdm import tqdm

from pfl.engine.faults import Stopped
from pfl.engine.progress import RoundProgressBar, close_bars
from tests.helpers import REPO, tiny


def _bars(term: io.StringIO):
    rounds = tqdm(total=10, desc="rounds", file=term, leave=True, position=0, mininterval=0)
    evaluation = tqdm(total=5, desc="evaluation (round 4)", file=term, leave=False, position=1, mininterval=0)
    rounds.update(4)
    evaluation.update(2)
    return rounds, evaluation


def test_the_bars_end_their_lines_before_the_stop_message():
    term = io.StringIO()
    bars = _bars(term)  # noqa: F841 - kept open (a bar that is collected closes itself)
    term.write("^C")  # the terminal's echo of Ctrl-C, at the cursor: the end of the bar's line
    RoundProgressBar(10).on_exception(None, None, Stopped(signal.SIGINT, 3))  # Lightning's hook on the way out
    shown = term.getvalue()
    assert shown.endswith("\n")  # the message printed next starts a line
    last = shown[:-1].rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
    assert last.startswith("rounds:") and "4/10" in last and "^C" not in last  # the bar redrawn over the echo
    assert not tqdm._instances  # nothing left to redraw over the message
    # without it, the message would go right after the bar on the same line
    term = io.StringIO()
    bars = _bars(term)
    assert not term.getvalue().endswith("\n")
    for b in bars:
        b.close()
    close_bars()  # nothing open: a no-op


def _render(raw: str) -> list[str]:
    """The lines a terminal shows for `raw` (carriage returns overwrite; escape sequences dropped)."""
    raw = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", raw)
    return [line.rsplit("\r", 1)[-1] for line in raw.replace("\r\n", "\n").split("\n")]


@pytest.mark.slow  # a real run in a pseudo-terminal (interpreter start-up dominates); in the full suite
def test_ctrl_c_in_a_terminal_prints_the_stop_on_a_clean_line(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    args = tiny({"rounds": 400, "eval_every": 50, "checkpoint_every": 1, "personalization.train_clients": 0})
    master, slave = pty.openpty()  # stdout and stderr on one terminal, as in a shell
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 0 columns: tqdm draws nothing
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled")
    proc = subprocess.Popen([sys.executable, "-m", "pfl", *args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO,
                            env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    raw, sent, deadline = b"", False, time.time() + 240
    while time.time() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            raw += chunk
        if not sent and re.search(rb"\| *[1-9]\d*/400 \[", raw) and b"round 50: heldout" in raw:
            proc.send_signal(signal.SIGINT)
            sent = True
        if proc.poll() is not None and not ready:
            break
    rc = proc.wait(timeout=60)
    os.close(master)
    lines = _render(raw.decode(errors="replace"))
    assert sent and rc == 130, lines[-10:]
    (stop,) = [line for line in lines if "stopped at round" in line]
    assert stop.startswith("stopped at round"), lines[-10:]  # on its own line, not after the bar
    # the log lines of the run (round 50's evaluation) went above the bar (tqdm's logging redirect), not into it
    logged = [line for line in lines if "[pfl][INFO]" in line]
    assert any("round 50: heldout" in line for line in logged), lines
    assert all(line.startswith("[20") for line in logged), [line for line in logged if not line.startswith("[20")]
