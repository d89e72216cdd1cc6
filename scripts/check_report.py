"""Screenshot a Snakemake HTML report in headless Chromium and check that it is not blank.

    python scripts/check_report.py results/demo/report.html --png report.png
    python scripts/check_report.py report.zip            # a zipped report is unpacked first

Chromium (Debian: ``apt-get install -y chromium``) loads the page, waits until its layout
stops changing (the report is drawn by JavaScript), and takes a full-page PNG over the
DevTools protocol (``--remote-debugging-pipe``, so no network port and no extra packages).
The page counts as blank when the screenshot's grey levels barely vary or almost every
pixel has the page's dominant colour. Exit status: 0 ok, 1 blank, 2 could not check.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MAX_HEIGHT = 16000  # px: longer pages are cut (Chromium's screenshots get unreliable beyond)


class CheckError(RuntimeError):
    """The page could not be loaded or captured."""


class DevTools:
    """A headless Chromium driven over the DevTools protocol on file descriptors 3 and 4."""

    def __init__(self, browser: str, profile: Path, timeout: float):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and answers on fd 4
            high = [
                fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write)
            ]
            os.dup2(high[0], 3)  # dup2 leaves 3 and 4 open across exec (the pipes are not)
            os.dup2(high[1], 4)

        arguments = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            arguments,
            preexec_fn=child_fds,  # noqa: PLW1509 - single-threaded script
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._timeout = timeout
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._from_browser], [], [], remaining)[0]:
                raise CheckError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise CheckError("Chromium exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self._timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CheckError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str, session: str) -> None:
        """Wait for an event of ``session`` (or find it among those already received)."""
        deadline = time.monotonic() + self._timeout
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    self._events.remove(event)
                    return
            self._events.append(self._read_message(deadline))

    def close(self) -> None:
        with contextlib.suppress(CheckError, OSError):
            self.call("Browser.close")
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def screenshot(
    browser: str, page: Path, width: int, settle: float, timeout: float
) -> tuple[bytes, int]:
    """A full-page PNG of ``page`` and the length of its visible text."""
    with tempfile.TemporaryDirectory(prefix="check-report-") as profile:
        tools = DevTools(browser, Path(profile), timeout)
        try:
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            session = tools.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            tools.call("Page.enable", session)
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            tools.call("Page.navigate", session, url=page.resolve().as_uri())
            tools.wait_event("Page.loadEventFired", session)
            size = _settled_size(tools, session, settle, timeout)
            text = tools.call(
                "Runtime.evaluate",
                session,
                expression="document.body ? document.body.innerText.trim().length : 0",
                returnByValue=True,
            )["result"]["value"]
            clip = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], MAX_HEIGHT)}
            data = tools.call(
                "Page.captureScreenshot",
                session,
                format="png",
                captureBeyondViewport=True,
                clip={**clip, "scale": 1},
            )["data"]
        finally:
            tools.close()
    return base64.b64decode(data), int(text)


def _settled_size(tools: DevTools, session: str, settle: float, timeout: float) -> list[int]:
    """The page's content size once it has not changed for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        metrics = tools.call("Page.getLayoutMetrics", session)["cssContentSize"]
        size = [max(1, int(metrics["width"])), max(1, int(metrics["height"]))]
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= settle or time.monotonic() > deadline:
            return size
        time.sleep(0.25)


def blank_check(png: bytes, min_std: float, min_content: float) -> tuple[bool, str]:
    """(ok, summary): grey-level spread and the share of pixels off the dominant colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    grey = pixels.mean(axis=2)
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    dominant = colours[counts.argmax()]
    content = float(np.any(np.abs(pixels.astype(int) - dominant) > 16, axis=2).mean())
    std = float(grey.std())
    ok = std >= min_std and content >= min_content
    summary = (
        f"{pixels.shape[1]}x{pixels.shape[0]} px, grey-level std {std:.1f} (min {min_std}), "
        f"{100 * content:.2f} % of pixels off the dominant colour {tuple(map(int, dominant))} "
        f"(min {100 * min_content:.2f} %)"
    )
    return ok, summary


def report_page(path: Path, workdir: Path) -> Path:
    """The HTML page to open: the file itself, or ``report.html`` of an unpacked zip."""
    if path.suffix != ".zip":
        return path
    with zipfile.ZipFile(path) as archive:
        archive.extractall(workdir)
    pages = sorted(workdir.rglob("*.html"), key=lambda p: (p.name != "report.html", len(p.parts)))
    if not pages:
        raise CheckError(f"{path}: no .html file inside")
    return pages[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report .html, or a .zip report")
    parser.add_argument("--png", type=Path, help="where to keep the screenshot")
    parser.add_argument("--browser", help="Chromium binary (default: found on PATH)")
    parser.add_argument("--width", type=int, default=1280, help="viewport width, px")
    parser.add_argument("--settle", type=float, default=2.0, help="s without layout change")
    parser.add_argument("--timeout", type=float, default=60.0, help="s per browser step")
    parser.add_argument("--min-std", type=float, default=2.0, help="grey-level std, 0-255")
    parser.add_argument("--min-content", type=float, default=0.001, help="share of pixels")
    args = parser.parse_args(argv)

    browser = args.browser or next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        print("no Chromium found: apt-get install -y chromium", file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"{args.report}: no such file", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="check-report-zip-") as workdir:
            page = report_page(args.report, Path(workdir))
            png, text_length = screenshot(browser, page, args.width, args.settle, args.timeout)
    except (CheckError, zipfile.BadZipFile) as error:
        print(f"could not check {args.report}: {error}", file=sys.stderr)
        return 2
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        args.png.write_bytes(png)
    ok, summary = blank_check(png, args.min_std, args.min_content)
    print(f"{args.report}: {'ok' if ok else 'BLANK'}: {summary}; {text_length} characters of text")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
