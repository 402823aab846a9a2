"""The sweep report page in a real browser (headless Chromium, Debian's package; .ci/run installs it):
it loads with no console message, every figure decodes, and Optuna's views are on the page."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pfl.report.__main__ import main
from tests.report.test_sweeps import single_objective_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH: install Debian's package "
                                "(apt-get install --no-install-recommends chromium; .ci/run does)")

# appended to a copy of the page: after every image has loaded, each records its decoded width, and an
# image that did not decode is a console error
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.dataset.width = img.naturalWidth;
    if (!img.complete || img.naturalWidth === 0) console.error("image did not decode: " + img.alt);
  }
  document.body.dataset.loaded = "yes";
});
</script></body>"""


def _load(page: Path, tmp_path: Path) -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, the console messages) of `page` in headless Chromium."""
    probe = page.with_name("probe_" + page.name)  # beside the page: its relative links stay as they are
    probe.write_text(page.read_text().replace("</body>", PROBE))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, re.findall(r":CONSOLE[^\]]*\] (.*)", proc.stderr)


class _Sections(HTMLParser):
    """Per <h2> heading: the decoded widths of its images; and the text of the best-trial callouts."""

    def __init__(self):
        super().__init__()
        self.sections: dict[str, list[int]] = {}
        self.best: list[str] = []
        self._in, self._heading = None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2" or (tag == "p" and a.get("class") == "best"):
            self._in, text = tag, ""
            if tag == "h2":
                self._heading = ""
            else:
                self.best.append(text)
        elif tag == "img" and self._heading is not None:
            self.sections[self._heading].append(int(a.get("data-width") or 0))

    def handle_endtag(self, tag):
        if tag == self._in:
            if tag == "h2":
                self.sections[self._heading] = []
            self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self._heading += data
        elif self._in == "p":
            self.best[-1] += data


@pytest.mark.slow  # a headless Chromium
def test_the_sweep_report_loads_in_chromium_without_errors_and_shows_optunas_views(tmp_path):
    single_objective_sweep(tmp_path)
    assert main([str(tmp_path)]) == 0
    dom, console = _load(tmp_path / "report.html", tmp_path)
    assert console == []
    assert 'data-loaded="yes"' in dom  # the probe ran after the load event
    page = _Sections()
    page.feed(dom)
    assert len(page.best) == 1 and page.best[0].startswith("Best trial #3: heldout/pers_acc_5 = 1 with local_epochs=20")
    for view in ("Parameter importance", "Parallel coordinates", "Contour", "Optimization history"):
        assert view in page.sections, sorted(page.sections)
        widths = page.sections[view]
        assert widths and all(w > 100 for w in widths), (view, widths)  # a real figure, decoded


def test_the_probe_sees_a_broken_figure_and_a_script_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html><body><h2>Contour</h2><img alt="Contour" src="data:image/png;base64,AAAA">'
                    "<script>notDefined()</script></body></html>")
    dom, console = _load(page, tmp_path)
    assert any("image did not decode: Contour" in m for m in console)
    assert any("notDefined is not defined" in m for m in console)
    sections = _Sections()
    sections.feed(dom)
    assert sections.sections == {"Contour": [0]}
