"""A headless Chromium driven over the DevTools protocol: load a page, collect what its
console and scripts reported, measure its images, take a screenshot.

The flags keep the browser off the network (this machine's is closed; a report must not
need it anyway): no background networking, component updates, sync or first-run page, and
a fresh profile per browser. The DevTools socket listens on a port the browser picks
(`--remote-debugging-port=0`, read back from DevToolsActivePort), so tests never collide.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What loading one page showed: console errors, uncaught exceptions, failed loads."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    events: list[dict[str, Any]] = field(default_factory=list)


class Chromium:
    """`with Chromium(binary) as browser: load = browser.load(path)`, then `evaluate` and
    `screenshot` on the loaded page."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000) -> None:
        self.binary, self.width, self.height = binary, width, height
        self._ids = 0
        self._pending: list[dict[str, Any]] = []  # events read while waiting for a reply

    def __enter__(self) -> Chromium:
        import websocket  # websocket-client (the dev extra)

        self._profile = Path(tempfile.mkdtemp(prefix="probe-chromium-"))
        self._proc = subprocess.Popen(
            [
                self.binary,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                "--remote-debugging-port=0",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._port(timeout=60)
        targets = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read()
        )
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.send(method)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):  # the socket of a browser about to be stopped
            self._ws.close()
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _port(self, timeout: float) -> int:
        active = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._proc.returncode} on start")
            if active.is_file() and active.read_text().strip():
                return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError(f"chromium opened no DevTools port within {timeout:.0f} s")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._ids += 1
        self._ws.send(json.dumps({"id": self._ids, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._pending.append(message)

    def load(self, path: Path, timeout: float = 60) -> PageLoad:
        """Navigate to a file, wait for its load event and a moment after it, return what the
        console, the scripts and the network layer reported on the way."""
        self._pending = []
        self.send("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + timeout
        loaded = False
        while not loaded:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not load within {timeout:.0f} s")
            loaded = any(m.get("method") == "Page.loadEventFired" for m in self._pending)
            if not loaded:
                self._pending.append(json.loads(self._ws.recv()))
        self.evaluate("new Promise(function (done) { setTimeout(done, 300); })")
        result = PageLoad(events=list(self._pending))
        for m in self._pending:
            method, params = m.get("method"), m.get("params", {})
            if method == "Network.requestWillBeSent":
                result.requests.append(params.get("request", {}).get("url", ""))
            elif method == "Network.loadingFailed":
                result.errors.append(f"failed to load: {params.get('errorText')}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                result.errors.append(
                    f"exception: {details.get('text')} "
                    f"{details.get('exception', {}).get('description', '')}"
                )
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
                )
                result.errors.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                result.errors.append(
                    f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
                )
        return result

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: Path, height: int | None = None, top: float = 0) -> Path:
        """A PNG of the page from `top` down, `height` CSS pixels tall (default the viewport)."""
        clip = {"x": 0, "y": top, "width": self.width, "height": height or self.height, "scale": 1}
        shot = self.send(
            "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def main(argv: list[str] | None = None) -> int:
    """`python -m tests.browser.chromium PAGE.html SHOT.png [HEIGHT]`: load a page, print its
    console errors, write a screenshot of its top (how docs/report-atlas.png was made)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    binary = find_chromium()
    if binary is None or len(args) not in (2, 3):
        print(
            "usage: python -m tests.browser.chromium PAGE.html SHOT.png [HEIGHT] (needs chromium)"
        )
        return 2
    with Chromium(binary) as browser:
        load = browser.load(Path(args[0]))
        for error in load.errors:
            print(error)
        browser.screenshot(Path(args[1]), int(args[2]) if len(args) == 3 else None)
    return 1 if load.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
