"""The human-evaluation page (ScoreMix Table 7): raters compare two one-shot translation results.

``mixgan vote --tasks TASKS.json --db votes.sqlite --port 8765`` serves one page (standard
library only: :class:`http.server.ThreadingHTTPServer`). A rater gets a random id in a cookie;
for each task of the rater's seeded plan (:func:`mixgan.votes.make_plan`) the page shows the
source and target images and the two results side by side, and the rater clicks the better one.

The page is blind to the methods: results are served as ``/image/<task>/left`` and
``/image/<task>/right`` (the side resolved on the server from the rater's plan), re-encoded as
PNG without metadata, with the same alt text on both sides. A vote is ``POST /vote`` with the
JSON body ``{"task": ..., "side": "left" | "right"}``; the server maps the side to the method and
stores the vote with the sides it showed (:func:`mixgan.votes.record_vote`). Malformed requests
get 400 with a message, a second vote of a rater on a task 409 (the first is kept).
"""

from __future__ import annotations

import functools
import html
import io
import json
import logging
import re
import secrets
import signal
from collections.abc import Collection
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mixgan import votes
from mixgan.votes import ID_PATTERN, SIDES, DuplicateVote, Task

log = logging.getLogger("mixgan.vote")

COOKIE = "mixgan_rater"
#: the largest vote body accepted (a vote is about 40 bytes)
MAX_BODY = 1024
#: a larger body is not even drained before the 400 answer
_DRAIN_LIMIT = 1 << 20
ROLES = ("source", "target", *SIDES)
_IMAGE_PATH = re.compile(r"^/image/([^/]+)/([^/]+)$")

HEADERS_SECURITY = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Vary": "Cookie",
}

SCRIPT = """\
"use strict";
const main = document.querySelector("main[data-task]");
const status = document.getElementById("status");
for (const button of document.querySelectorAll("button.choice")) {
  button.addEventListener("click", async () => {
    for (const other of document.querySelectorAll("button.choice")) other.disabled = true;
    status.textContent = "Saving...";
    try {
      const response = await fetch("/vote", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        credentials: "same-origin",
        body: JSON.stringify({task: main.dataset.task, side: button.dataset.side}),
      });
      const answer = await response.json();
      if (response.ok || response.status === 409) {
        window.location.assign("/");
        return;
      }
      status.textContent = answer.error || ("Error " + response.status);
    } catch (error) {
      status.textContent = "Could not save the vote: " + error;
    }
    for (const other of document.querySelectorAll("button.choice")) other.disabled = false;
  });
}
"""

STYLE = """\
body { font-family: sans-serif; margin: 1.5em auto; max-width: 70em; padding: 0 1em; }
.row { display: flex; gap: 1.5em; justify-content: center; flex-wrap: wrap; }
figure { margin: 0; text-align: center; }
img { width: 256px; height: 256px; object-fit: contain; background: #eee; display: block; }
button.choice { border: 3px solid #999; border-radius: 6px; background: #fff; padding: 0.5em;
  cursor: pointer; font-size: 1em; }
button.choice:hover, button.choice:focus { border-color: #06c; }
button.choice span { display: block; margin-top: 0.4em; }
#status { min-height: 1.5em; color: #a00; text-align: center; }
.meta { color: #555; }
"""


class BadRequest(ValueError):
    """A malformed request; the message tells the client what was wrong."""


# -- validation (pure) -------------------------------------------------------------------------


def rater_from_cookie(header: str | None) -> str | None:
    """The rater id of a Cookie header, or None when it is absent, not a valid id, or one of the
    simulator's (``sim-``) ids."""
    if not header:
        return None
    try:
        cookie = SimpleCookie(header)
    except CookieError:
        return None
    morsel = cookie.get(COOKIE)
    if morsel is None or not ID_PATTERN.match(morsel.value) or morsel.value.startswith("sim-"):
        return None
    return morsel.value


def check_vote_headers(rater: str | None, content_type: str | None, length: str | None) -> int:
    """Check a vote request's rater and headers; return the body length to read."""
    if rater is None:
        raise BadRequest(f"missing rater: no valid '{COOKIE}' cookie (open the page / first)")
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(f"wrong content type {content_type!r}: send application/json")
    if length is None or not length.strip().isdigit():
        raise BadRequest("missing or invalid Content-Length")
    size = int(length)
    if size > MAX_BODY:
        raise BadRequest(f"body of {size} bytes is too large (at most {MAX_BODY})")
    return size


def parse_vote_body(body: bytes, tasks: Collection[str]) -> tuple[str, str]:
    """The (task, side) of a vote body ``{"task": ..., "side": "left" | "right"}``."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(f"body is not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise BadRequest('body must be a JSON object {"task": ..., "side": ...}')
    extra = sorted(set(data) - {"task", "side"})
    if extra:
        raise BadRequest(f"unexpected field(s) {extra}: send only task and side")
    task, side = data.get("task"), data.get("side")
    if not isinstance(task, str) or not task:
        raise BadRequest("missing task")
    if task not in tasks:
        raise BadRequest(f"unknown task {task[:64]!r}")
    if side not in SIDES:
        raise BadRequest(f"unknown side {str(side)[:16]!r}: expected 'left' or 'right'")
    return task, side


# -- images and pages --------------------------------------------------------------------------


def png_bytes(path: Path) -> bytes:
    """The image re-encoded as PNG without metadata (names, text chunks, format do not leak)."""
    stat = path.stat()
    return _png_bytes(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _png_bytes(path: str, mtime_ns: int, size: int) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<link rel="stylesheet" href="/static/vote.css">\n</head>\n<body>\n'
        f"{body}\n</body>\n</html>\n"
    )


def task_page(rater: str, task: str, number: int, total: int) -> str:
    """The page of one comparison: references above, the two results as buttons below."""
    t = html.escape(task, quote=True)
    results = "\n".join(
        f'<button type="button" class="choice" id="choose-{side}" data-side="{side}">'
        f'<img src="/image/{t}/{side}" alt="translation result {label}">'
        f"<span>{label.capitalize()} is better</span></button>"
        for side, label in (("left", "left"), ("right", "right"))
    )
    body = (
        "<header><h1>Which translation is better?</h1>\n"
        f'<p class="meta">Comparison <span id="number">{number}</span> of '
        f'<span id="total">{total}</span> &middot; rater <code id="rater">'
        f"{html.escape(rater)}</code></p></header>\n"
        f'<main data-task="{t}">\n'
        "<p>The source image was translated into the style of the target image by two "
        "methods. Click the result of better quality: the one that keeps the structure of the "
        "source and matches the textures and colours of the target with fewer artifacts.</p>\n"
        '<div class="row">\n'
        f'<figure><img src="/image/{t}/source" alt="source image">'
        "<figcaption>Source (content)</figcaption></figure>\n"
        f'<figure><img src="/image/{t}/target" alt="target style image">'
        "<figcaption>Target (style)</figcaption></figure>\n</div>\n"
        f'<h2>Results</h2>\n<div class="row">\n{results}\n</div>\n'
        '<p id="status" role="status"></p>\n</main>\n'
        '<script src="/static/vote.js"></script>'
    )
    return _page(f"Comparison {number} of {total}", body)


def done_page(rater: str, total: int) -> str:
    """The page shown once the rater has voted on every task."""
    body = (
        '<main id="done"><h1>Thank you!</h1>\n'
        f"<p>You have compared all {total} pairs (rater <code>{html.escape(rater)}</code>). "
        "You can close this page.</p></main>"
    )
    return _page("Thank you", body)


# -- server ------------------------------------------------------------------------------------


class VoteServer(ThreadingHTTPServer):
    """The HTTP server: tasks, database path and study seed shared by the request handlers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], tasks: list[Task], db: Path, seed: int):
        self.tasks = tasks
        self.by_id = {task.id: task for task in tasks}
        self.db = Path(db)
        self.seed = seed
        votes.connect(self.db).close()  # create the schema (and the WAL) before serving
        super().__init__(address, VoteHandler)


class VoteHandler(BaseHTTPRequestHandler):
    """Routes: ``/``, ``/static/vote.js|css``, ``/image/<task>/<role>``, ``/healthz``, ``POST
    /vote``."""

    server: VoteServer
    server_version = "mixgan-vote/1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- responses

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in {**HEADERS_SECURITY, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _text(self, status: int, message: str) -> None:
        self._send(status, message.encode() + b"\n", "text/plain; charset=utf-8")

    # -- GET

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._index()
        elif path == "/healthz":
            self._json(HTTPStatus.OK, {"ok": True, "tasks": len(self.server.tasks)})
        elif path == "/static/vote.js":
            self._send(HTTPStatus.OK, SCRIPT.encode(), "text/javascript; charset=utf-8")
        elif path == "/static/vote.css":
            self._send(HTTPStatus.OK, STYLE.encode(), "text/css; charset=utf-8")
        elif match := _IMAGE_PATH.match(path):
            self._image(match.group(1), match.group(2))
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def _index(self) -> None:
        rater = rater_from_cookie(self.headers.get("Cookie"))
        headers = {}
        if rater is None:
            rater = "r" + secrets.token_hex(8)
            headers["Set-Cookie"] = (
                f"{COOKIE}={rater}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict"
            )
        conn = votes.connect(self.server.db)
        try:
            _, plan = votes.rater_plan(conn, rater, self.server.tasks, self.server.seed)
            done = votes.voted_tasks(conn, rater)
        finally:
            conn.close()
        pending = [item for item in plan if item.task not in done]
        if pending:
            page = task_page(rater, pending[0].task, len(plan) - len(pending) + 1, len(plan))
        else:
            page = done_page(rater, len(plan))
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", headers)

    def _image(self, task_id: str, role: str) -> None:
        task = self.server.by_id.get(task_id)
        if task is None or role not in ROLES:
            self._text(HTTPStatus.NOT_FOUND, "no such image")
            return
        if role in SIDES:
            rater = rater_from_cookie(self.headers.get("Cookie"))
            if rater is None:
                self._text(HTTPStatus.BAD_REQUEST, f"missing rater: no valid '{COOKIE}' cookie")
                return
            conn = votes.connect(self.server.db)
            try:
                _, plan = votes.rater_plan(conn, rater, self.server.tasks, self.server.seed)
            finally:
                conn.close()
            item = next((item for item in plan if item.task == task_id), None)
            if item is None:
                self._text(HTTPStatus.NOT_FOUND, "no such image")
                return
            path = task.results[item.method(role)]
        else:
            path = task.source if role == "source" else task.target
        self._send(HTTPStatus.OK, png_bytes(path), "image/png")

    # -- POST

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/vote":
            self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
            return
        rater = rater_from_cookie(self.headers.get("Cookie"))
        body: bytes | None = None
        try:
            size = check_vote_headers(
                rater, self.headers.get("Content-Type"), self.headers.get("Content-Length")
            )
            body = self.rfile.read(size)
            task, side = parse_vote_body(body, self.server.by_id)
        except BadRequest as error:
            if body is None:
                self._drain()
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        assert rater is not None  # check_vote_headers refuses a missing rater
        conn = votes.connect(self.server.db)
        try:
            seed, plan = votes.rater_plan(conn, rater, self.server.tasks, self.server.seed)
            if not any(item.task == task for item in plan):
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"task {task} is not in your plan"})
                return
            votes.record_vote(conn, votes.make_vote(rater, seed, plan, task, side))
        except DuplicateVote:
            self._json(
                HTTPStatus.CONFLICT,
                {"error": f"you have already voted on task {task}; the first vote is kept"},
            )
            return
        finally:
            conn.close()
        log.info("vote: rater %s, task %s, side %s", rater, task, side)
        self._json(HTTPStatus.OK, {"ok": True, "next": "/"})

    def _drain(self) -> None:
        """Read an unread body (up to a limit) so the client sees the answer, not a reset."""
        length = self.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) <= _DRAIN_LIMIT:
            self.rfile.read(int(length))
        self.close_connection = True


def serve(tasks: list[Task], db: Path, host: str, port: int, seed: int) -> None:
    """Serve the page until interrupted (Ctrl-C or SIGTERM); every vote is already committed."""
    server = VoteServer((host, port), tasks, db, seed)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    log.info("serving %d tasks on http://%s:%d/ (votes in %s)", len(tasks), host, port, db)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()
        signal.signal(signal.SIGTERM, previous)
