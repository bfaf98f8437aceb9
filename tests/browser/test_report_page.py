"""The report page in a real browser: it loads without a console error, shows every image,
fetches nothing beyond itself, sorts its tables, and a screenshot of it is written.

Chromium comes from the distribution's packages (.ci/run installs it as root); where it is
missing the test is skipped and says how to get it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from probe.results.atlas import write_report
from tests.atlas_results import KEY, OTHER_KEY, full_results, shallow_results
from tests.browser.chromium import Chromium, find_chromium

BINARY = find_chromium()
pytestmark = pytest.mark.skipif(
    BINARY is None,
    reason="chromium not found on PATH: .ci/run installs Debian's (apt-get install -y "
    "chromium, as root); install it to run the browser check of probe report's page",
)

IMAGES = """Array.prototype.map.call(document.images, function (img) {
  return {alt: img.alt, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
          shown: [img.clientWidth, img.clientHeight]};
})"""

# Click the atlas's first data column header and read that column's values in row order.
SORT = """(function () {
  var table = document.querySelector("table.atlas");
  var th = table.tHead.rows[1].cells[1];
  th.click();
  return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
    return parseFloat(row.cells[1].getAttribute("data-v"));
  });
})()"""


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_report_page_loads_cleanly_in_chromium(tmp_path: Path) -> None:
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives Chromium")
    root = shallow_results(full_results(tmp_path / "results"))
    page, _ = write_report(root, [KEY, OTHER_KEY], tmp_path / "report.html")
    assert BINARY is not None
    with Chromium(BINARY, width=1400, height=1000) as browser:
        load = browser.load(page)
        assert load.errors == []
        assert load.requests and all(u.startswith(("file:", "data:")) for u in load.requests), (
            load.requests
        )
        images = browser.evaluate(IMAGES)
        assert len(images) == 9  # 8 of the full model, 1 of the shallow one
        for img in images:
            assert img["complete"] and min(img["natural"]) > 0 and min(img["shown"]) > 0, img
        assert browser.evaluate("document.querySelectorAll('table.atlas').length") == 2
        column = browser.evaluate(SORT)
        assert column == sorted(column) and len(column) == 5
        shot = browser.screenshot(tmp_path / "report.png", height=1600)
        assert browser.evaluate("document.querySelectorAll('.mark').length") == 3
    assert _png_size(shot) == (1400, 1600)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_the_browser_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The check above can fail: a script error, a console error and a missing image are
    each reported."""
    pytest.importorskip("websocket", reason="websocket-client (the dev extra) drives Chromium")
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>x</title>'
        '</head><body><img src="absent.png" alt="absent"><script>'
        'console.error("planted"); undefinedFunction();</script></body></html>'
    )
    assert BINARY is not None
    with Chromium(BINARY) as browser:
        load = browser.load(page)
        [img] = browser.evaluate(IMAGES)
    joined = " | ".join(load.errors)
    assert "console.error: planted" in joined and "undefinedFunction" in joined
    assert "failed to load" in joined
    assert img["natural"] == [0, 0]
