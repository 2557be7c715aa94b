"""A real headless browser for the report tests: Debian's `chromium`, driven through the DevTools protocol over
`--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON: no WebSocket library, no port).

`open_page` loads a file and records what a person's browser would do with it: every network request (the
Network domain's requestWillBeSent, before any blocking), every console message and uncaught exception (Runtime
and Log domains), every JavaScript dialog (an `alert()` the page tried to open: it is dismissed and recorded).
Name resolution is mapped to nowhere (`--host-resolver-rules`), so a request that did slip out could not leave the
machine either. `Page.evaluate` runs an expression in the page, `Page.screenshot` returns PNG bytes.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SKIP_REASON = ("needs a headless browser: Debian's `chromium` (scripts/install-test-deps.sh installs it: "
               "apt-get install chromium)")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


@dataclass
class Page:
    browser: Browser
    session: str
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    console: list[tuple[str, str]] = field(default_factory=list)  # (level, text) of every console message
    errors: list[str] = field(default_factory=list)  # uncaught exceptions, console.error, Log errors
    dialogs: list[str] = field(default_factory=list)  # alert/confirm/prompt messages the page tried to show

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def evaluate(self, expression: str) -> Any:
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in out:
            raise BrowserError(f"{expression!r} raised in the page: {out['exceptionDetails']}")
        return out["result"].get("value")

    def screenshot(self, width: int = 1280, height: int | None = None) -> bytes:
        """A PNG of the page `width` wide, `height` tall (None: the whole page)."""
        full = height is None
        if full:
            height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full}, timeout=60)
        return base64.b64decode(shot["data"])

    def on_event(self, method: str, params: dict) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append((params["type"], text))
            if params["type"] in ("error", "assert"):
                self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.errors.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append((entry["level"], entry["text"]))
            if entry["level"] == "error":
                self.errors.append(f"log ({entry.get('source')}): {entry['text']} {entry.get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params["message"])
            self.browser.post("Page.handleJavaScriptDialog", {"accept": False}, self.session)


class Browser:
    """One headless Chromium process; `page(path)` opens a file in a new tab."""

    def __init__(self, executable: str) -> None:
        self._profile = tempfile.mkdtemp(prefix="archc-chromium-")
        to_browser_r, self._out = os.pipe()  # we write commands here; chromium reads them on fd 3
        self._in, from_browser_w = os.pipe()  # chromium writes answers on fd 4
        args = [executable, "--headless=new", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars",
                "--enable-logging=stderr", "--v=0",
                f"--user-data-dir={self._profile}", "about:blank"]
        def child_fds() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4 (inheritable)
            r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)  # above 4 first, so that neither is clobbered
            w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)
        self.stderr = tempfile.TemporaryFile()
        # close_fds=False: fds 3 and 4 must survive exec (pipes from os.pipe are not inheritable; dup2's are)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     close_fds=False, preexec_fn=child_fds)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._id = 0
        self._pages: dict[str, Page] = {}

    def post(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, deadline: float) -> dict:
        import select
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium exited: {self.stderr_text()[-2000:]}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _dispatch(self, msg: dict) -> None:
        page = self._pages.get(msg.get("sessionId", ""))
        if page is not None and "method" in msg:
            page.on_event(msg["method"], msg.get("params", {}))

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        want = self.post(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._dispatch(msg)

    def pump(self, seconds: float) -> None:
        """Handle events for `seconds` (late console messages, requests)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._dispatch(self._read(deadline))
        except BrowserError as err:
            if "in time" not in str(err):
                raise

    def page(self, path: Path, scripts: bool = True, timeout: float = 30) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self._pages[session] = page
        for domain in ("Page", "Network", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        if not scripts:
            page.send("Emulation.setScriptExecutionDisabled", {"value": True})
        page.send("Page.setLifecycleEventsEnabled", {"enabled": True})
        page.send("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + timeout
        while True:  # until the load event
            msg = self._read(deadline)
            self._dispatch(msg)
            if msg.get("sessionId") == session and msg.get("method") == "Page.loadEventFired":
                break
        self.pump(0.3)
        return page

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.post("Browser.close")
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._out)
            os.close(self._in)
            self.stderr.close()
            shutil.rmtree(self._profile, ignore_errors=True)


@contextmanager
def browser() -> Iterator[Browser]:
    exe = find_chromium()
    if exe is None:
        raise BrowserError(SKIP_REASON)
    b = Browser(exe)
    try:
        yield b
    finally:
        b.close()


def png_colours(png: bytes) -> tuple[int, int, int]:
    """(width, height, distinct colours) of a PNG: decoded with Pillow."""
    import io

    from PIL import Image
    with Image.open(io.BytesIO(png)) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        return rgb.width, rgb.height, len(colours)
