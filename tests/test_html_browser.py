"""report.html: self-contained, and working in a real browser.

The browser test drives Debian's headless Chromium through the DevTools protocol (one websocket,
websocket-client; no driver binary, no browser download). It skips when chromium is missing; CI
installs it in .ci/run. Screenshots are kept in the test's tmp directory (printed, see -s or -rA)
and, when INFERSWEEP_TEST_ARTIFACTS names a folder, copied there.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from infersweep.case import Case
from infersweep.reports.formats import write_reports
from infersweep.results.result import Result

ENV = {"host": "h", "cpu": "Test CPU", "cores_usable": 2, "cores_logical": 2, "memory_gib": 1.0,
       "os": "linux", "python": "3.11", "packages": {"torch": "2.14.1"}, "gpus": []}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--remote-debugging-port=0",
                  "--window-size=1400,1000"]
# A failure reason with markup in it: it must show as text, never run.
HOSTILE_REASON = "RuntimeError: <script>console.error('injected')</script> & <b>bold</b>"


def _case(backend, size, batch):
    return Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", size, batch, "synthetic")


def _results() -> list[Result]:
    rng = random.Random(7)
    results = []
    for backend, factor in (("torch", 1.0), ("onnxruntime", 0.55)):
        for size in (224, 384):
            for batch in (1, 8, 32):
                median = factor * (4 + 2 * batch) * size / 224
                results.append(Result(_case(backend, size, batch), "ok", samples_ms=[
                    median * (1 + abs(rng.gauss(0, 0.03))) for _ in range(25)]))
    results.append(Result(_case("onnxruntime", 384, 64), "oom", reason="MemoryError"))
    results.append(Result(_case("torch", 384, 64), "failed", reason=HOSTILE_REASON))
    return results


@pytest.fixture
def report(tmp_path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    write_reports(out, _results(), ENV, "torch", visuals=True)
    return out / "report.html"


def test_html_is_self_contained(report):
    html = report.read_text()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, flags=re.I)
    assert "<link" not in html and "<script src" not in html and "@import" not in html
    assert html.count("data:image/png;base64,") == len(list(report.parent.glob("plots/*.png")))
    assert HOSTILE_REASON not in html  # escaped, so the markup is text
    assert "&lt;script&gt;console.error(&#x27;injected&#x27;)&lt;/script&gt;" in html
    assert html.count('<tr data-case="') + html.count('<tr class="bad" data-case="') == 14


class DevTools:
    """The few DevTools protocol calls the test needs, over one websocket to one page."""

    def __init__(self, ws_url: str):
        import websocket

        # No Origin header: Chromium refuses DevTools websockets from origins it was not told of.
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.events: list[dict] = []
        self.last_id = 0

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        self.ws.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.last_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.events:
                if msg.get("method") == method:
                    return msg
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def js(self, expression: str):
        out = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre (not element.click(): that would skip
        hit-testing, so an overlapping element or a wrong layout would go unnoticed)."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                      "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                      button="left", clickCount=1)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        import base64

        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (test extra)")
    profile = tmp_path / "profile"  # a fresh profile: no state from other runs
    log = open(tmp_path / "chromium.log", "w")
    # Its own process group, so that the browser and its helpers all end with the test.
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "about:blank"], stdout=log, stderr=log, start_new_session=True)
    devtools = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start: {(tmp_path / 'chromium.log').read_text()}")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        while True:  # the page target appears shortly after the port file
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        devtools = DevTools(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            devtools.call(f"{domain}.enable")
        yield devtools
    finally:
        if devtools is not None:
            devtools.ws.close()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _column(page: DevTools, header: str) -> list[str]:
    """The sort keys of one column, in the order the rows are shown."""
    return page.js(f"""(() => {{
        const heads = Array.from(document.querySelectorAll('#results thead th'));
        const col = heads.findIndex(h => h.textContent === {json.dumps(header)});
        return Array.from(document.querySelectorAll('#results tbody tr'))
            .map(r => r.cells[col].getAttribute('data-sort') ?? r.cells[col].textContent);
    }})()""")


def _keep(path: Path) -> None:
    print(f"\nscreenshot: {path}")
    if os.environ.get("INFERSWEEP_TEST_ARTIFACTS"):
        folder = Path(os.environ["INFERSWEEP_TEST_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)


def test_report_in_headless_chromium(report, browser, tmp_path):
    page = browser
    page.call("Page.navigate", url=report.as_uri())
    page.wait_for("Page.loadEventFired")

    # Loaded without errors, and without asking the network for anything.
    errors = [e for e in page.events
              if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled"
                  and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    requested = [e["params"]["request"]["url"] for e in page.events
                 if e.get("method") == "Network.requestWillBeSent"]
    assert requested and all(u.startswith(("file:", "data:")) for u in requested), requested

    # One row per case, every plot decoded, the hostile reason shown as text.
    assert page.js("document.querySelectorAll('#results tbody tr').length") == len(_results())
    assert page.js("document.getElementById('shown').textContent") == "14 of 14 cases shown"
    assert page.js("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert page.js("document.images.length") == len(list(report.parent.glob("plots/*.png")))
    assert HOSTILE_REASON in page.js("document.getElementById('failures').textContent")
    _keep(page.screenshot(tmp_path / "report-top.png"))

    # Sorting by throughput: a click reorders the rows ascending, empty cells last; a second
    # click, descending.
    header = "throughput (img/s)"
    before = _column(page, header)
    page.click(f"#results thead th:nth-child({_header_index(page, header)})")
    ascending = _column(page, header)
    numbers = [float(v) for v in ascending if v != ""]
    assert ascending != before
    assert numbers == sorted(numbers) and ascending[len(numbers):] == ["", ""]
    assert page.js("document.querySelector('#results th[aria-sort]').textContent") == header
    page.click(f"#results thead th:nth-child({_header_index(page, header)})")
    descending = _column(page, header)
    assert [float(v) for v in descending if v != ""] == sorted(numbers, reverse=True)
    assert descending[-2:] == ["", ""]

    # Filtering: typed terms must all match a row.
    page.click("#filter")
    page.call("Input.insertText", text="onnxruntime 384")
    visible = page.js("Array.from(document.querySelectorAll('#results tbody tr'))"
                      ".filter(r => !r.hidden).length")
    assert visible == 4  # batches 1, 8, 32 and the oom at 64
    assert page.js("document.getElementById('shown').textContent") == "4 of 14 cases shown"
    _keep(page.screenshot(tmp_path / "report-full.png", full_page=True))


def _header_index(page: DevTools, header: str) -> int:
    return page.js("Array.from(document.querySelectorAll('#results thead th'))"
                   f".findIndex(h => h.textContent === {json.dumps(header)})") + 1
