"""Votes of the human evaluation (ScoreMix Table 7): tasks, rater plans, storage, aggregation.

A *task* is one one-shot translation: a source image, a target (style) image and the result of
each of two methods. A *rater* sees every task once, in an order and with left/right sides
drawn from a seed derived from the study seed and the rater id (:func:`rater_seed`,
:func:`make_plan`), so a rater's session can be reproduced from the database alone.

Votes live in SQLite (WAL mode). :func:`record_vote` writes one vote in one transaction and
the ``UNIQUE(rater, task)`` constraint keeps the first vote of a rater on a task.
:func:`table7` aggregates votes and per-task SIFID values into the paper's 2x2 table.
The web page that collects the votes is :mod:`mixgan.vote`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mixgan.errors import DataError
from mixgan.io import atomic_open

#: task and rater ids: safe in URLs, HTML attributes and file names
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SIDES = ("left", "right")
#: a task's human or SIFID outcome: which method is better, or neither
OUTCOMES = ("ours", "baseline", "tie")

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    rater TEXT PRIMARY KEY,
    seed INTEGER NOT NULL,
    plan TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    simulated INTEGER NOT NULL DEFAULT 0 CHECK (simulated IN (0, 1)),
    n_votes INTEGER NOT NULL DEFAULT 0,
    last_vote_utc TEXT
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    rater TEXT NOT NULL REFERENCES raters (rater),
    task TEXT NOT NULL,
    chosen TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('left', 'right')),
    left_method TEXT NOT NULL,
    right_method TEXT NOT NULL CHECK (right_method <> left_method),
    position INTEGER NOT NULL CHECK (position >= 0),
    rater_seed INTEGER NOT NULL,
    created_utc TEXT NOT NULL,
    simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
    UNIQUE (rater, task),
    CHECK ((side = 'left' AND chosen = left_method) OR (side = 'right' AND chosen = right_method))
);
"""


class DuplicateVote(Exception):
    """The rater has already voted on this task; the first vote is kept."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One translation task: the reference images and each method's result (paths on disk)."""

    id: str
    source: Path
    target: Path
    results: dict[str, Path]


@dataclasses.dataclass(frozen=True)
class PlanItem:
    """A task as one rater sees it: its position in the rater's order and the sides."""

    task: str
    left: str
    right: str

    def method(self, side: str) -> str:
        """The method shown on ``side``."""
        return {"left": self.left, "right": self.right}[side]


@dataclasses.dataclass(frozen=True)
class Vote:
    """One stored vote (one row of the ``votes`` table and of the exported CSV)."""

    rater: str
    task: str
    chosen: str
    side: str
    left_method: str
    right_method: str
    position: int
    rater_seed: int
    created_utc: str
    simulated: bool = False


VOTE_COLUMNS = [field.name for field in dataclasses.fields(Vote)]


def utc_now() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- tasks and plans ---------------------------------------------------------------------------


def load_tasks(path: str | Path) -> list[Task]:
    """Read TASKS.json (``{"tasks": [...]}``); relative image paths are relative to its folder.

    Every task needs a unique id (:data:`ID_PATTERN`), a source, a target and the results of
    the same two methods; every image must exist.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read the tasks file ({error})") from error
    entries = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(f'{path}: expected {{"tasks": [...]}} with at least one task')
    tasks: list[Task] = []
    methods: set[str] | None = None
    for index, entry in enumerate(entries):
        where = f"{path}: tasks[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("results"), dict):
            raise DataError(f"{where}: expected an object with id, source, target, results")
        task_id = str(entry.get("id", ""))
        if not ID_PATTERN.match(task_id):
            raise DataError(f"{where}: id {task_id!r} must match {ID_PATTERN.pattern}")
        if any(task.id == task_id for task in tasks):
            raise DataError(f"{where}: duplicate task id {task_id!r}")
        results = {
            str(k): _image_path(path, v, f"{where}.results.{k}")
            for k, v in entry["results"].items()
        }
        if len(results) != 2 or not all(ID_PATTERN.match(name) for name in results):
            raise DataError(f"{where}: results must name exactly two methods, got {list(results)}")
        if methods is not None and set(results) != methods:
            raise DataError(f"{where}: methods {sorted(results)} differ from {sorted(methods)}")
        methods = set(results)
        source = _image_path(path, entry.get("source"), f"{where}.source")
        target = _image_path(path, entry.get("target"), f"{where}.target")
        tasks.append(Task(task_id, source, target, results))
    return tasks


def _image_path(tasks_file: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: expected an image path")
    image = Path(value) if Path(value).is_absolute() else tasks_file.parent / value
    if not image.is_file():
        raise DataError(f"{where}: image {image} not found")
    return image


def methods_of(tasks: list[Task]) -> tuple[str, str]:
    """The two methods of the tasks, sorted."""
    first, second = sorted(tasks[0].results)
    return first, second


def rater_seed(study_seed: int, rater: str) -> int:
    """The seed of one rater's plan: a hash of the study seed and the rater id (63 bits)."""
    digest = hashlib.sha256(f"{study_seed}/{rater}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def make_plan(seed: int, tasks: list[Task]) -> list[PlanItem]:
    """Seeded order of the tasks, and for each task a fair coin for which method is left."""
    rng = random.Random(seed)
    order = [task.id for task in tasks]
    rng.shuffle(order)
    by_id = {task.id: task for task in tasks}
    plan = []
    for task_id in order:
        first, second = sorted(by_id[task_id].results)
        left, right = (second, first) if rng.random() < 0.5 else (first, second)
        plan.append(PlanItem(task_id, left, right))
    return plan


# -- storage -----------------------------------------------------------------------------------


def connect(db: str | Path) -> sqlite3.Connection:
    """Open (and create) the vote database: WAL journal, foreign keys, explicit transactions."""
    conn = sqlite3.connect(db, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.executescript(SCHEMA)
    return conn


def rater_plan(
    conn: sqlite3.Connection,
    rater: str,
    tasks: list[Task],
    study_seed: int,
    simulated: bool = False,
) -> tuple[int, list[PlanItem]]:
    """The rater's (seed, plan): the stored one, or a new one stored now.

    A stored plan is kept as it is (a restart with another seed or task list does not reshuffle
    a rater's session); its tasks that are no longer in ``tasks`` are left out.
    """
    if not ID_PATTERN.match(rater):
        raise ValueError(f"rater id {rater!r} must match {ID_PATTERN.pattern}")
    row = conn.execute("SELECT seed, plan FROM raters WHERE rater = ?", (rater,)).fetchone()
    if row is None:
        seed = rater_seed(study_seed, rater)
        plan = make_plan(seed, tasks)
        text = json.dumps([dataclasses.asdict(item) for item in plan])
        conn.execute(
            "INSERT OR IGNORE INTO raters (rater, seed, plan, created_utc, simulated) "
            "VALUES (?, ?, ?, ?, ?)",
            (rater, seed, text, utc_now(), int(simulated)),
        )
        row = conn.execute("SELECT seed, plan FROM raters WHERE rater = ?", (rater,)).fetchone()
    known = {task.id for task in tasks}
    plan = [PlanItem(**item) for item in json.loads(row[1])]
    return int(row[0]), [item for item in plan if item.task in known]


def voted_tasks(conn: sqlite3.Connection, rater: str) -> set[str]:
    """The tasks the rater has voted on."""
    rows = conn.execute("SELECT task FROM votes WHERE rater = ?", (rater,))
    return {task for (task,) in rows}


def make_vote(
    rater: str, seed: int, plan: list[PlanItem], task: str, side: str, simulated: bool = False
) -> Vote:
    """The vote of ``rater`` for ``side`` of ``task``, with the sides of the rater's plan."""
    positions = {item.task: index for index, item in enumerate(plan)}
    if task not in positions:
        raise KeyError(f"task {task!r} is not in the plan of rater {rater!r}")
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    item = plan[positions[task]]
    return Vote(
        rater=rater,
        task=task,
        chosen=item.method(side),
        side=side,
        left_method=item.left,
        right_method=item.right,
        position=positions[task],
        rater_seed=seed,
        created_utc=utc_now(),
        simulated=simulated,
    )


def record_vote(conn: sqlite3.Connection, vote: Vote) -> None:
    """Store one vote in one transaction (the rater's vote count is updated in the same one).

    Raises :class:`DuplicateVote` when the rater has voted on the task already (the first vote
    stays), ``sqlite3.IntegrityError`` for a vote the schema refuses (unknown rater, a chosen
    method that is not on the chosen side); either way nothing of the vote is written.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE raters SET n_votes = n_votes + 1, last_vote_utc = ? WHERE rater = ?",
            (vote.created_utc, vote.rater),
        )
        conn.execute(
            f"INSERT INTO votes ({', '.join(VOTE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(VOTE_COLUMNS))})",
            [int(v) if isinstance(v, bool) else v for v in dataclasses.astuple(vote)],
        )
        conn.execute("COMMIT")
    except BaseException as error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error):
            raise DuplicateVote(f"rater {vote.rater} has already voted on {vote.task}") from None
        raise


def read_votes(conn: sqlite3.Connection) -> list[Vote]:
    """Every stored vote, in the order they were recorded."""
    rows = conn.execute(f"SELECT {', '.join(VOTE_COLUMNS)} FROM votes ORDER BY id")
    return [Vote(*row[:-1], simulated=bool(row[-1])) for row in rows]


def export_csv(db: str | Path, out: str | Path) -> int:
    """Write every vote as one CSV row (columns :data:`VOTE_COLUMNS`); return the count."""
    conn = connect(db)
    try:
        votes = read_votes(conn)
    finally:
        conn.close()
    with atomic_open(out, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(VOTE_COLUMNS)
        for vote in votes:
            row = dataclasses.astuple(vote)
            writer.writerow([int(v) if isinstance(v, bool) else v for v in row])
    return len(votes)


def read_votes_csv(path: str | Path) -> list[Vote]:
    """The votes of an exported CSV."""
    with open(path, newline="") as handle:
        return [_vote_from_row(row) for row in csv.DictReader(handle)]


def _vote_from_row(row: Mapping[str, str]) -> Vote:
    values: dict[str, Any] = {key: row[key] for key in VOTE_COLUMNS}
    values["position"] = int(values["position"])
    values["rater_seed"] = int(values["rater_seed"])
    values["simulated"] = values["simulated"] in ("1", "True", "true")
    return Vote(**values)


# -- simulation --------------------------------------------------------------------------------


def simulate_votes(
    db: str | Path,
    tasks: list[Task],
    raters: int,
    seed: int,
    prefer: str | None = None,
) -> int:
    """Seeded demo votes: ``raters`` simulated raters vote on every task of their plan.

    Each task draws a probability q ~ U(0, 1) that a simulated rater picks ``prefer`` (default:
    the second of the two sorted method names); each rater then votes by a seeded coin with
    that bias. Votes go through :func:`record_vote` marked ``simulated``; votes already stored
    (a rerun) are skipped. Returns the number of votes written. The votes carry no information
    about the methods: tables built from them are labelled as simulated.
    """
    methods = methods_of(tasks)
    prefer = prefer or methods[1]
    if prefer not in methods:
        raise ValueError(f"--prefer must be one of {methods}, got {prefer!r}")
    rng = random.Random(seed)
    bias = {task.id: rng.random() for task in tasks}
    conn = connect(db)
    written = 0
    try:
        for index in range(raters):
            rater = f"sim-{seed}-{index:03d}"
            r_seed, plan = rater_plan(conn, rater, tasks, seed, simulated=True)
            coin = random.Random(r_seed)
            done = voted_tasks(conn, rater)
            for item in plan:
                wants = prefer if coin.random() < bias[item.task] else _other(methods, prefer)
                if item.task in done:
                    continue
                side = "left" if item.left == wants else "right"
                try:
                    record_vote(conn, make_vote(rater, r_seed, plan, item.task, side, True))
                except DuplicateVote:
                    continue
                written += 1
    finally:
        conn.close()
    return written


def _other(methods: tuple[str, str], method: str) -> str:
    return methods[1] if method == methods[0] else methods[0]


# -- aggregation -------------------------------------------------------------------------------


def human_winners(votes: Iterable[Vote], ours: str, baseline: str) -> dict[str, str]:
    """Per task, ``ours``/``baseline`` for the method with more votes, ``tie`` for equal counts."""
    counts: dict[str, Counter[str]] = {}
    for vote in votes:
        if vote.chosen not in (ours, baseline):
            raise ValueError(f"vote of {vote.rater} on {vote.task} for unknown {vote.chosen!r}")
        counts.setdefault(vote.task, Counter())[vote.chosen] += 1
    return {task: _winner(c[ours], c[baseline], higher=True) for task, c in counts.items()}


def _winner(ours: float, baseline: float, higher: bool) -> str:
    if ours == baseline:
        return "tie"
    return "ours" if (ours > baseline) == higher else "baseline"


@dataclasses.dataclass(frozen=True)
class Table7:
    """SIFID winner x human winner over tasks, as counts and percentages of all counted tasks."""

    ours: str
    baseline: str
    counts: dict[tuple[str, str], int]
    tasks: int
    skipped: dict[str, list[str]]
    simulated: bool

    def percent(self, sifid: str, human: str) -> float:
        """Percentage of the counted tasks with this (SIFID winner, human winner)."""
        return 100.0 * self.counts.get((sifid, human), 0) / self.tasks if self.tasks else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """The table as rows (SIFID outcome) of percentages per human outcome.

        The ``tie`` row and column appear only when a task has a tie, so a table without ties
        has the paper's 2x2 layout.
        """
        used_s = [o for o in OUTCOMES if o != "tie" or any(s == "tie" for s, _ in self.counts)]
        used_h = [o for o in OUTCOMES if o != "tie" or any(h == "tie" for _, h in self.counts)]
        label = {"ours": "Ours > {b}", "baseline": "Ours < {b}", "tie": "Ours = {b}"}
        return [
            {
                "SIFID": label[s].format(b=self.baseline),
                **{
                    f"Human: {label[h].format(b=self.baseline)}": round(self.percent(s, h), 1)
                    for h in used_h
                },
            }
            for s in used_s
        ]


def table7(
    votes: Iterable[Vote],
    sifid: Mapping[str, Mapping[str, float]],
    ours: str = "sincut_scoremix",
    baseline: str = "sincut",
) -> Table7:
    """The paper's Table 7 from votes and per-task SIFID values (``sifid[task][method]``).

    Human winner of a task: the method with more votes; equal counts are a ``tie`` (counted in
    their own column, never split or dropped). SIFID winner: the lower SIFID; equal values are
    a ``tie`` row. Percentages are of the tasks that have votes and both SIFIDs; tasks that
    lack either are listed in ``skipped`` (``no_votes``, ``no_sifid``), not counted.
    """
    votes = list(votes)
    human = human_winners(votes, ours, baseline)
    counts: Counter[tuple[str, str]] = Counter()
    skipped: dict[str, list[str]] = {"no_votes": [], "no_sifid": []}
    for task in sorted(set(human) | set(sifid)):
        values = sifid.get(task, {})
        if task not in human:
            skipped["no_votes"].append(task)
        elif ours not in values or baseline not in values:
            skipped["no_sifid"].append(task)
        else:
            winner = _winner(float(values[ours]), float(values[baseline]), higher=False)
            counts[(winner, human[task])] += 1
    return Table7(
        ours=ours,
        baseline=baseline,
        counts=dict(counts),
        tasks=sum(counts.values()),
        skipped=skipped,
        simulated=any(vote.simulated for vote in votes),
    )
