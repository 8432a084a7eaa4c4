"""Render a local HTML page in a real headless browser and report what it shows.

    python tests/headless_browser.py page.html shot.png [probe]

The browser is Chromium, as Qt WebEngine embeds it (PySide6-WebEngine, installed from PyPI
with the dev dependencies), on Qt's offscreen platform, so no display is needed. Prints a JSON
object: the page title, facts read from the rendered DOM by JavaScript, the size of the
full-page screenshot saved as PNG and how many of its pixels have each scorecard band colour;
with a `probe` (a JavaScript expression returning JSON text), also what it returned, as `probe`.
Run as its own process: Qt wants the main thread and exits with the page.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Chromium's sandbox refuses to start as root (CI, containers); the page is our own file.
os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--no-sandbox --disable-gpu --disable-logging --log-level=3")
os.environ.setdefault("QTWEBENGINE_DISABLE_SANDBOX", "1")

from PySide6.QtCore import QEventLoop, QTimer, QUrl  # noqa: E402
from PySide6.QtWebEngineWidgets import QWebEngineView  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

WIDTH = 1280
TIMEOUT_S = 60.0
PROBE = 0x01FE02  # a colour no page uses: marks that a frame of the final size was painted
BAND_COLOURS = {"green": 0xD3F9D8, "yellow": 0xFFF3BF, "red": 0xFFD8D8}

FACTS = """(() => {
  const chart = document.querySelector('.chart svg');
  const box = chart ? chart.getBoundingClientRect() : null;
  const probe = document.createElement('span');
  probe.textContent = 'Hello World';
  document.body.appendChild(probe);
  const textWidth = probe.getBoundingClientRect().width;
  probe.remove();
  return JSON.stringify({
    entity_rows: [...document.querySelectorAll('#scores tbody tr')].map(r => r.cells[0].innerText.split('\\n')[0]),
    overall: document.getElementById('overall-score')?.innerText,
    chart: box ? {width: box.width, height: box.height, lines: chart.querySelectorAll('path').length} : null,
    alerts: document.querySelectorAll('.alert').length,
    failing_rows: document.querySelectorAll('table.checks tbody tr').length,
    text_width: textWidth,
  });
})()"""


def _wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def render(html_path: str, png_path: str, probe: str | None = None) -> dict:
    app = QApplication.instance() or QApplication([sys.argv[0]])  # noqa: F841 - must outlive the view
    view = QWebEngineView()
    view.resize(WIDTH, 600)
    view.show()
    loaded: dict = {}
    loop = QEventLoop()
    view.loadFinished.connect(lambda ok: (loaded.setdefault("ok", ok), loop.quit()))
    QTimer.singleShot(int(TIMEOUT_S * 1000), loop.quit)
    view.load(QUrl.fromLocalFile(os.path.abspath(html_path)))
    loop.exec()
    if not loaded.get("ok"):
        raise SystemExit(f"the page did not load: {html_path}")

    def js(expression: str):
        done, out = QEventLoop(), {}
        view.page().runJavaScript(expression, 0, lambda v: (out.setdefault("v", v), done.quit()))
        QTimer.singleShot(int(TIMEOUT_S * 1000), done.quit)
        done.exec()
        return out.get("v")

    height = int(js("Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight))"))
    view.resize(WIDTH, height)
    # A fixed sleep can capture a frame painted before the resize: wait until a marker in the
    # bottom-right corner appears in a grab, then until a grab without it arrives.
    js(
        "(() => { const d = document.createElement('div'); d.id = '__probe'; d.style.cssText = "
        "'position:fixed;right:0;bottom:0;width:1px;height:1px;z-index:2147483647;background:#01fe02';"
        " document.documentElement.appendChild(d); })()"
    )
    deadline = time.monotonic() + TIMEOUT_S

    def grab(with_probe: bool):
        while time.monotonic() < deadline:
            _wait(50)
            image = view.grab().toImage()
            painted = (image.width(), image.height()) == (WIDTH, height)
            if painted and ((image.pixel(WIDTH - 1, height - 1) & 0xFFFFFF) == PROBE) == with_probe:
                return image
        raise SystemExit("the browser painted no frame in time")

    grab(True)
    js("document.getElementById('__probe').remove()")
    image = grab(False)
    if not image.save(png_path):
        raise SystemExit(f"could not write {png_path}")
    counts = dict.fromkeys(BAND_COLOURS, 0)
    for y in range(0, image.height(), 2):
        for x in range(0, image.width(), 2):
            colour = image.pixel(x, y) & 0xFFFFFF
            for band, value in BAND_COLOURS.items():
                if colour == value:
                    counts[band] += 1
    facts = {
        "title": js("document.title"),
        **json.loads(js(FACTS)),
        "screenshot": {"width": image.width(), "height": image.height()},
        "band_pixels": counts,
    }
    if probe:
        facts["probe"] = json.loads(js(probe))
    view.close()
    view.deleteLater()
    _wait(0)
    return facts


if __name__ == "__main__":
    print(json.dumps(render(*sys.argv[1:4])))
