"""The human evaluation: tasks and plans, vote storage, request validation, the HTTP server,
the simulator, the CSV export and the Table 7 aggregation (``mixgan.votes``, ``mixgan.vote``)."""

from __future__ import annotations

import http.client
import io
import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from mixgan import votes
from mixgan.cli import main as cli_main
from mixgan.errors import DataError
from mixgan.vote import (
    MAX_BODY,
    BadRequest,
    VoteServer,
    check_vote_headers,
    parse_vote_body,
    rater_from_cookie,
    task_page,
)
from mixgan.votes import DuplicateVote, Vote

OURS, BASE = "sincut_scoremix", "sincut"


def colour(task: int, role: str) -> tuple[int, int, int]:
    """The solid colour of one image of the test tasks: distinct per task and role."""
    base = {"source": (0, 0, 200), "target": (200, 200, 0), BASE: (200, 0, 0), OURS: (0, 200, 0)}
    red, green, blue = base[role]
    return red + 5 * task, green + 5 * task, blue + 5 * task


def write_tasks(folder: Path, count: int) -> Path:
    """TASKS.json with ``count`` tasks of solid-colour images (relative paths). The baseline's
    results are JPEGs, ScoreMix's PNGs with a text chunk naming the method: neither the format
    nor the metadata may reach the page."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(count):
        names = {}
        for role in ("source", "target", BASE, OURS):
            image = Image.new("RGB", (24, 16), colour(index, role))
            if role == BASE:
                names[role] = f"t{index}_{role}.jpg"
                image.save(folder / names[role], quality=95)
            else:
                names[role] = f"t{index}_{role}.png"
                info = PngImagePlugin.PngInfo()
                info.add_text("method", role)
                image.save(folder / names[role], pnginfo=info)
        entries.append(
            {
                "id": f"task{index:02d}",
                "source": names["source"],
                "target": names["target"],
                "results": {BASE: names[BASE], OURS: names[OURS]},
            }
        )
    path = folder / "tasks.json"
    path.write_text(json.dumps({"tasks": entries}))
    return path


@pytest.fixture
def tasks(tmp_path: Path) -> list[votes.Task]:
    return votes.load_tasks(write_tasks(tmp_path / "images", 4))


def vote_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT rater, task, chosen, side FROM votes ORDER BY id").fetchall()
    finally:
        conn.close()


# -- tasks and plans ---------------------------------------------------------------------------


def test_load_tasks_resolves_paths_and_refuses_bad_files(tmp_path: Path) -> None:
    path = write_tasks(tmp_path, 2)
    loaded = votes.load_tasks(path)
    assert [task.id for task in loaded] == ["task00", "task01"]
    assert loaded[0].results[BASE] == tmp_path / "t0_sincut.jpg"
    assert votes.methods_of(loaded) == (BASE, OURS)

    data = json.loads(path.read_text())
    broken = {
        "nowhere.png not found": {**data["tasks"][1], "source": "nowhere.png"},
        "duplicate task id": dict(data["tasks"][0]),
        "exactly two methods": {**data["tasks"][1], "results": {BASE: "t0_sincut.jpg"}},
        "must match": {**data["tasks"][1], "id": "../etc"},
        "differ from": {**data["tasks"][1], "results": {BASE: "t0_sincut.jpg", "x": "bad.json"}},
    }
    for message, entry in broken.items():
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"tasks": [data["tasks"][0], entry]}))
        with pytest.raises(DataError, match=message):
            votes.load_tasks(bad)


def test_plans_are_seeded_per_rater_and_balanced(tasks: list[votes.Task]) -> None:
    plan = votes.make_plan(votes.rater_seed(0, "alice"), tasks)
    assert plan == votes.make_plan(votes.rater_seed(0, "alice"), tasks)
    assert sorted(item.task for item in plan) == [task.id for task in tasks]
    assert all({item.left, item.right} == {BASE, OURS} for item in plan)
    plans = [votes.make_plan(votes.rater_seed(0, f"r{i}"), tasks) for i in range(200)]
    assert len({tuple(p) for p in plans}) > 100  # raters get different orders and sides
    lefts = Counter(item.left for p in plans for item in p)
    assert 0.4 < lefts[OURS] / (lefts[OURS] + lefts[BASE]) < 0.6
    firsts = Counter(p[0].task for p in plans)
    assert set(firsts) == {task.id for task in tasks}
    assert votes.rater_seed(0, "alice") != votes.rater_seed(1, "alice")


def test_a_stored_plan_survives_reopening_with_another_seed(tmp_path: Path, tasks) -> None:
    db = tmp_path / "votes.sqlite"
    conn = votes.connect(db)
    seed, plan = votes.rater_plan(conn, "alice", tasks, study_seed=0)
    conn.close()
    conn = votes.connect(db)
    assert votes.rater_plan(conn, "alice", tasks, study_seed=7) == (seed, plan)
    # a task dropped from the task list disappears from the plan, the rest keeps its order
    assert votes.rater_plan(conn, "alice", tasks[1:], study_seed=0)[1] == [
        item for item in plan if item.task != tasks[0].id
    ]
    conn.close()


# -- storage -----------------------------------------------------------------------------------


def test_votes_are_stored_with_their_sides_in_wal_mode(tmp_path: Path, tasks) -> None:
    db = tmp_path / "votes.sqlite"
    conn = votes.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    seed, plan = votes.rater_plan(conn, "alice", tasks, 0)
    for index, item in enumerate(plan):
        votes.record_vote(conn, votes.make_vote("alice", seed, plan, item.task, "left"))
        stored = votes.read_votes(conn)[-1]
        assert (stored.chosen, stored.left_method, stored.right_method) == (
            item.left,
            item.left,
            item.right,
        )
        assert stored.position == index and stored.rater_seed == seed
        assert stored.created_utc.endswith("Z") and not stored.simulated
    conn.close()
    # a restart is a reopen: every vote is still there
    conn = votes.connect(db)
    assert [v.task for v in votes.read_votes(conn)] == [item.task for item in plan]
    assert conn.execute("SELECT n_votes FROM raters").fetchone()[0] == len(plan)
    conn.close()


def test_a_duplicate_vote_is_refused_and_the_first_kept(tmp_path: Path, tasks) -> None:
    conn = votes.connect(tmp_path / "votes.sqlite")
    seed, plan = votes.rater_plan(conn, "alice", tasks, 0)
    task = plan[0].task
    votes.record_vote(conn, votes.make_vote("alice", seed, plan, task, "left"))
    with pytest.raises(DuplicateVote):
        votes.record_vote(conn, votes.make_vote("alice", seed, plan, task, "right"))
    (stored,) = votes.read_votes(conn)
    assert stored.side == "left" and stored.chosen == plan[0].left
    assert conn.execute("SELECT n_votes FROM raters").fetchone()[0] == 1
    assert not conn.in_transaction


def test_a_failing_insert_leaves_nothing_behind(tmp_path: Path, tasks) -> None:
    conn = votes.connect(tmp_path / "votes.sqlite")
    seed, plan = votes.rater_plan(conn, "alice", tasks, 0)
    good = votes.make_vote("alice", seed, plan, plan[0].task, "left")
    # the rater's vote counter is updated first in the same transaction: it must roll back
    wrong_method = Vote(**{**good.__dict__, "chosen": plan[0].right})
    unknown_rater = Vote(**{**good.__dict__, "rater": "nobody"})
    for vote in (wrong_method, unknown_rater):
        with pytest.raises(sqlite3.IntegrityError):
            votes.record_vote(conn, vote)
        assert not conn.in_transaction
        assert votes.read_votes(conn) == []
        assert conn.execute("SELECT n_votes, last_vote_utc FROM raters").fetchone() == (0, None)
    votes.record_vote(conn, good)  # the connection is still usable
    assert votes.read_votes(conn) == [good]


def test_concurrent_votes_on_one_task_store_exactly_one(tmp_path: Path, tasks) -> None:
    db = tmp_path / "votes.sqlite"
    conn = votes.connect(db)
    seed, plan = votes.rater_plan(conn, "alice", tasks, 0)
    conn.close()
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def vote(side: str) -> None:
        own = votes.connect(db)
        barrier.wait()
        try:
            votes.record_vote(own, votes.make_vote("alice", seed, plan, plan[0].task, side))
            outcomes.append("stored")
        except DuplicateVote:
            outcomes.append("duplicate")
        finally:
            own.close()

    threads = [threading.Thread(target=vote, args=(("left", "right")[i % 2],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["duplicate"] * 5 + ["stored"]
    assert len(vote_rows(db)) == 1


# -- request validation ------------------------------------------------------------------------


def test_vote_headers_are_validated() -> None:
    assert check_vote_headers("r1", "application/json; charset=utf-8", "35") == 35
    cases = {
        "missing rater": (None, "application/json", "10"),
        "wrong content type": ("r1", "application/x-www-form-urlencoded", "10"),
        "wrong content type 'text/plain'": ("r1", "text/plain", "10"),
        "Content-Length": ("r1", "application/json", None),
        "too large": ("r1", "application/json", str(MAX_BODY + 1)),
    }
    for message, arguments in cases.items():
        with pytest.raises(BadRequest, match=message):
            check_vote_headers(*arguments)
    with pytest.raises(BadRequest, match="wrong content type None"):
        check_vote_headers("r1", None, "10")


def test_vote_bodies_are_validated() -> None:
    known = {"task00", "task01"}
    assert parse_vote_body(b'{"task": "task01", "side": "right"}', known) == ("task01", "right")
    cases = {
        b"{not json": "not valid JSON",
        b"\xff\xfe": "not valid JSON",
        b'["task00", "left"]': "must be a JSON object",
        b'{"side": "left"}': "missing task",
        b'{"task": "task99", "side": "left"}': "unknown task 'task99'",
        b'{"task": "task00", "side": "middle"}': "unknown side 'middle'",
        b'{"task": "task00"}': "unknown side 'None'",
        b'{"task": "task00", "side": "left", "method": "sincut"}': r"unexpected field\(s\)",
    }
    for body, message in cases.items():
        with pytest.raises(BadRequest, match=message):
            parse_vote_body(body, known)


def test_rater_cookie_parsing() -> None:
    assert rater_from_cookie("mixgan_rater=r0123abcd") == "r0123abcd"
    assert rater_from_cookie("other=1; mixgan_rater=abc") == "abc"
    bad = (
        None,
        "",
        "other=1",
        'mixgan_rater="<script>"',
        "mixgan_rater=../x",
        "mixgan_rater=sim-0-001",
    )
    for header in bad:
        assert rater_from_cookie(header) is None


def test_pages_escape_what_they_show() -> None:
    page = task_page("r<1>", 'a"b<c>&', 1, 3)
    assert "r&lt;1&gt;" in page and 'data-task="a&quot;b&lt;c&gt;&amp;"' in page
    assert "<c>" not in page and "r<1>" not in page


# -- the HTTP server ---------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, tasks) -> Iterator[VoteServer]:
    running = VoteServer(("127.0.0.1", 0), tasks, tmp_path / "votes.sqlite", seed=0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()
    thread.join()


def request(
    server: VoteServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post_vote(server: VoteServer, rater: str | None, data: dict, **headers: str):
    body = json.dumps(data).encode()
    sent = {"Content-Type": "application/json", **headers}
    if rater:
        sent["Cookie"] = f"mixgan_rater={rater}"
    status, _, answer = request(server, "POST", "/vote", body, sent)
    return status, json.loads(answer)


def test_the_page_is_blind_and_votes_map_sides_to_methods(server: VoteServer) -> None:
    status, headers, page = request(server, "GET", "/")
    assert status == 200
    rater = rater_from_cookie(headers["Set-Cookie"].split(";")[0])
    assert rater is not None and "HttpOnly" in headers["Set-Cookie"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    text = page.decode()
    for leak in ("sincut", "scoremix", ".jpg", ".png"):
        assert leak not in text.lower()
    conn = votes.connect(server.db)
    seed, plan = votes.rater_plan(conn, rater, server.tasks, 0)
    conn.close()
    assert f'data-task="{plan[0].task}"' in text and f"/image/{plan[0].task}/left" in text
    cookie = {"Cookie": f"mixgan_rater={rater}"}
    index = int(plan[0].task[-2:])
    for side in ("left", "right"):
        status, headers, data = request(
            server, "GET", f"/image/{plan[0].task}/{side}", None, cookie
        )
        assert status == 200 and headers["Content-Type"] == "image/png"
        assert b"sincut" not in data and b"method" not in data  # no metadata left
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG"
        assert image.getpixel((3, 3)) == pytest.approx(colour(index, plan[0].method(side)), abs=3)
    status, _, _ = request(server, "GET", f"/image/{plan[0].task}/left")
    assert status == 400  # the sides need the rater
    assert request(server, "GET", "/image/task00/sincut")[0] == 404
    assert request(server, "GET", "/image/nope/source")[0] == 404

    status, answer = post_vote(server, rater, {"task": plan[0].task, "side": "right"})
    assert (status, answer) == (200, {"ok": True, "next": "/"})
    status, answer = post_vote(server, rater, {"task": plan[0].task, "side": "left"})
    assert status == 409 and "first vote is kept" in answer["error"]
    assert vote_rows(server.db) == [(rater, plan[0].task, plan[0].right, "right")]
    _, _, page = request(server, "GET", "/", None, cookie)
    assert f'data-task="{plan[1].task}"' in page.decode()
    assert '<span id="number">2</span>' in page.decode()


def test_malformed_votes_get_400_with_a_message(server: VoteServer) -> None:
    rater = "rtest"
    good = {"task": "task00", "side": "left"}
    cases = [
        (post_vote(server, None, good), "missing rater"),
        (post_vote(server, rater, {"task": "task77", "side": "left"}), "unknown task"),
        (post_vote(server, rater, {"task": "task00", "side": "up"}), "unknown side"),
        (post_vote(server, rater, good, **{"Content-Type": "text/plain"}), "content type"),
    ]
    oversized = json.dumps({**good, "pad": "x" * 10_000}).encode()
    status, _, body = request(
        server,
        "POST",
        "/vote",
        oversized,
        {"Content-Type": "application/json", "Cookie": f"mixgan_rater={rater}"},
    )
    cases.append(((status, json.loads(body)), "too large"))
    for (status, answer), message in cases:
        assert status == 400 and message in answer["error"]
    assert vote_rows(server.db) == []
    assert post_vote(server, rater, good)[0] == 200
    assert request(server, "POST", "/elsewhere", b"{}")[0] == 404


# -- export, simulation ------------------------------------------------------------------------


def test_simulated_votes_are_seeded_marked_and_exported(tmp_path: Path, tasks) -> None:
    tasks_file = write_tasks(tmp_path / "images", 4)
    first, second = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    argv = ["vote-simulate", "--tasks", str(tasks_file), "--raters", "5", "--seed", "3"]
    assert cli_main([*argv, "--db", str(first)]) == 0
    assert cli_main([*argv, "--db", str(second)]) == 0
    assert vote_rows(first) == vote_rows(second) and len(vote_rows(first)) == 20
    assert votes.simulate_votes(first, tasks, 5, 3) == 0  # a rerun adds nothing
    assert votes.simulate_votes(tmp_path / "c.sqlite", tasks, 5, 4) == 20
    assert vote_rows(tmp_path / "c.sqlite") != vote_rows(first)
    # one human vote beside them
    conn = votes.connect(first)
    seed, plan = votes.rater_plan(conn, "human1", tasks, 0)
    votes.record_vote(conn, votes.make_vote("human1", seed, plan, plan[0].task, "left"))
    conn.close()
    out = tmp_path / "votes.csv"
    assert cli_main(["vote-export", "--db", str(first), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].split(",") == votes.VOTE_COLUMNS and len(lines) == 22
    exported = votes.read_votes_csv(out)
    assert [v.simulated for v in exported] == [True] * 20 + [False]
    conn = votes.connect(first)
    assert exported == votes.read_votes(conn)
    conn.close()
    assert votes.table7(exported[:20], {}).simulated
    assert not votes.table7(exported[20:], {}).simulated
    assert cli_main(["vote-export", "--db", str(tmp_path / "none.sqlite"), "--out", "x"]) == 2


# -- aggregation -------------------------------------------------------------------------------


def ballots(task: str, ours: int, base: int, simulated: bool = False) -> list[Vote]:
    """``ours`` votes for ScoreMix and ``base`` for SinCUT on ``task`` (sides irrelevant)."""
    chosen = [OURS] * ours + [BASE] * base
    return [
        Vote(f"r{i}", task, m, "left", m, OURS if m == BASE else BASE, 0, 1, "t", simulated)
        for i, m in enumerate(chosen)
    ]


def test_table7_counts_winners_ties_and_skipped_tasks_by_hand() -> None:
    all_votes = (
        ballots("t1", 3, 1)  # human: ours
        + ballots("t2", 1, 2)  # human: baseline
        + ballots("t3", 2, 2)  # human: tie
        + ballots("t4", 1, 0)  # human: ours
        + ballots("t5", 4, 0)  # no SIFID: skipped
    )
    sifid = {
        "t1": {OURS: 0.5, BASE: 1.0},  # SIFID: ours
        "t2": {OURS: 0.2, BASE: 0.9},  # SIFID: ours
        "t3": {OURS: 1.5, BASE: 1.0},  # SIFID: baseline
        "t4": {OURS: 0.7, BASE: 0.7},  # SIFID: tie
        "t5": {OURS: 0.1},
        "t6": {OURS: 0.1, BASE: 0.3},  # no votes: skipped
    }
    table = votes.table7(all_votes, sifid)
    assert table.tasks == 4
    assert table.counts == {
        ("ours", "ours"): 1,
        ("ours", "baseline"): 1,
        ("baseline", "tie"): 1,
        ("tie", "ours"): 1,
    }
    assert table.skipped == {"no_votes": ["t6"], "no_sifid": ["t5"]}
    assert table.percent("ours", "ours") == 25.0 and table.percent("baseline", "ours") == 0.0
    rows = table.rows()
    assert [row["SIFID"] for row in rows] == ["Ours > sincut", "Ours < sincut", "Ours = sincut"]
    assert rows[2] == {
        "SIFID": "Ours = sincut",
        "Human: Ours > sincut": 25.0,
        "Human: Ours < sincut": 0.0,
        "Human: Ours = sincut": 0.0,
    }
    assert sum(value for row in rows for key, value in row.items() if key != "SIFID") == 100.0
    assert not table.simulated


def test_table7_reproduces_the_papers_layout_without_ties() -> None:
    """The paper's 83.3 / 6.6 / 1.7 / 8.4 % are 50, 4, 1 and 5 of 60 tasks (its rounding made
    them sum to 100; ours gives 83.3, 6.7, 1.7, 8.3)."""
    cells = [("ours", "ours", 50), ("ours", "baseline", 4), ("baseline", "ours", 1)]
    cells.append(("baseline", "baseline", 5))
    all_votes: list[Vote] = []
    sifid: dict[str, dict[str, float]] = {}
    for s_winner, h_winner, count in cells:
        for k in range(count):
            task = f"{s_winner}-{h_winner}-{k}"
            # 71 raters: a majority of 36 for the human winner
            all_votes += ballots(task, 36, 35) if h_winner == "ours" else ballots(task, 35, 36)
            sifid[task] = {OURS: 1.0, BASE: 2.0} if s_winner == "ours" else {OURS: 2.0, BASE: 1.0}
    table = votes.table7(all_votes, sifid)
    assert table.tasks == 60
    assert [list(row.values()) for row in table.rows()] == [
        ["Ours > sincut", 83.3, 6.7],
        ["Ours < sincut", 1.7, 8.3],
    ]
    with pytest.raises(ValueError, match="unknown 'other'"):
        votes.table7([Vote("r", "t", "other", "left", "other", OURS, 0, 1, "t")], sifid)
