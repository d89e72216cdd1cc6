"""End to end in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver, votes on the page that ``mixgan vote`` serves from a subprocess; the server is
restarted in the middle of the session and the votes are exported as CSV.

The test knows which side showed which method only from the server's record (the rater's plan
in the database), never from the page."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import JavascriptException
from selenium.common.exceptions import StaleElementReferenceException as StaleElement
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .test_vote import BASE, OURS, write_tasks

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(),
        reason="Chromium is not installed (apt-get install chromium)",
    ),
    pytest.mark.skipif(
        not Path(CHROMEDRIVER).is_file(),
        reason="chromedriver is not installed (apt-get install chromium-driver)",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``mixgan vote`` in a subprocess, started and stopped by the test."""

    def __init__(self, tasks: Path, db: Path, port: int, log: Path):
        self.argv = [sys.executable, "-m", "mixgan", "vote", "--tasks", str(tasks)]
        self.argv += ["--db", str(db), "--port", str(port), "--host", "127.0.0.1"]
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the vote server exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    assert json.load(answer) == {"ok": True, "tasks": 4}
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"the vote server did not answer: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(timeout=15) == 0, self.log.read_text()
        self.process = None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def stored(db: Path, query: str, *parameters: object) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, parameters).fetchall()
    finally:
        conn.close()


def choose(driver: webdriver.Chrome, plan: list[dict], number: int, method: str) -> str:
    """On comparison ``number``, click the result of ``method`` (its side from the plan)."""
    wait = WebDriverWait(driver, 15, ignored_exceptions=(JavascriptException, StaleElement))
    wait.until(lambda d: d.find_elements(By.ID, "number"))
    assert driver.find_element(By.ID, "number").text == str(number)
    item = plan[number - 1]
    assert driver.find_element(By.TAG_NAME, "main").get_attribute("data-task") == item["task"]
    loaded = driver.execute_script(
        "return Array.from(document.images).map(i => i.complete && i.naturalWidth);"
    )
    assert loaded == [24, 24, 24, 24]  # source, target, left, right all served
    page = driver.page_source.lower()
    assert BASE not in page and "scoremix" not in page  # blind to the methods
    side = "left" if item["left"] == method else "right"
    driver.find_element(By.ID, f"choose-{side}").click()
    moved_on = (  # the next page, loaded with its images
        "const main = document.querySelector('main');"
        "return document.readyState === 'complete' && main !== null"
        " && (main.id === 'done' || main.dataset.task !== arguments[0]);"
    )
    wait.until(lambda d: d.execute_script(moved_on, item["task"]))
    return side


def test_a_rater_votes_in_chromium_across_a_server_restart(tmp_path: Path, browser) -> None:
    started = time.monotonic()
    tasks = write_tasks(tmp_path / "images", 4)
    db = tmp_path / "votes.sqlite"
    server = Server(tasks, db, free_port(), tmp_path / "server.log")
    server.start()
    try:
        browser.get(f"{server.url}/")
        rater = browser.get_cookie("mixgan_rater")["value"]
        assert browser.find_element(By.ID, "rater").text == rater
        (plan_json,) = stored(db, "SELECT plan FROM raters WHERE rater = ?", rater)[0]
        plan = json.loads(plan_json)
        wanted = [OURS, BASE, OURS, BASE]
        sides = [choose(browser, plan, number, wanted[number - 1]) for number in (1, 2, 3)]
        expected = [
            (plan[k]["task"], wanted[k], sides[k], plan[k]["left"], plan[k]["right"], k)
            for k in range(3)
        ]
        query = (
            "SELECT task, chosen, side, left_method, right_method, position FROM votes "
            "WHERE rater = ? ORDER BY id"
        )
        assert stored(db, query, rater) == expected

        server.stop()
        server.start()
        assert stored(db, query, rater) == expected  # the restart kept every vote
        browser.get(f"{server.url}/")
        sides.append(choose(browser, plan, 4, wanted[3]))
        assert browser.find_elements(By.ID, "done")
        expected.append(
            (plan[3]["task"], wanted[3], sides[3], plan[3]["left"], plan[3]["right"], 3)
        )
        assert stored(db, query, rater) == expected

        # a second vote on a task from the same browser is refused, the first one kept
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/vote', {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: JSON.stringify({task: arguments[0], side: arguments[1]})})"
            ".then(r => done(r.status));",
            plan[0]["task"],
            "right" if sides[0] == "left" else "left",
        )
        assert status == 409
        assert stored(db, query, rater) == expected
    finally:
        server.stop()

    out = tmp_path / "votes.csv"
    export = [sys.executable, "-m", "mixgan", "vote-export", "--db", str(db), "--out", str(out)]
    subprocess.run(export, check=True, capture_output=True)
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["rater"], r["task"], r["chosen"], r["simulated"]) for r in rows] == [
        (rater, task, chosen, "0") for task, chosen, *_ in expected
    ]
    assert time.monotonic() - started < 60
