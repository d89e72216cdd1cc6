# Helpers of the one-shot translation rules (workflow/rules/oneshot.smk).
from mixgan.data.pairs import pair_problems  # noqa: E402
from mixgan.train.oneshot import sincut_options  # noqa: E402


def oneshot_layouts(section, kind):
    """The runnable tables (winrate) or figures (sample_grid) of one-shot runs."""
    return [
        layout.id
        for layout in STUDY.layouts_in(section)
        if layout.config.get("kind") == kind
        and not layout.pending_cells
        and STUDY.config["backbones"][layout.cells[0].runs[0].backbone]["arch"] == "sincut"
    ]


ONESHOT_TABLES = oneshot_layouts("tables", "winrate")
ONESHOT_FIGURES = oneshot_layouts("figures", "sample_grid")
NEVER = r"(?!x)x"  # a wildcard pattern matching nothing, when there is no such layout
TASK = f"{RUN}/tasks/{{task}}"
TASK_DATA = f"{R}/oneshot/{{dataset}}/{{backbone}}/{{task}}"

for _run in STUDY.runnable_runs():  # bad SinCUT options stop the workflow before any job
    _backbone = STUDY.config["backbones"][_run.backbone]
    if _backbone["arch"] == "sincut":
        try:
            sincut_options(_backbone.get("options", {}), f"backbones.{_run.backbone}.options")
        except ConfigError as error:
            raise WorkflowError(str(error)) from None
        _part = STUDY.scoremix_part(_run.method)
        if _part and not (isinstance(_part["mu"], int) and _part["mu"] > 0):
            raise WorkflowError(
                f"parts.{_part['name']}.mu: {_part['mu']!r}, but one-shot runs ({_run.id}) "
                "take a static ScoreMix set (a positive integer mu)"
            )


def result_key(run):
    """The name a run's method has in the vote page and the table: sincut, sincut_<method>."""
    return run.backbone if run.method == "none" else f"{run.backbone}_{run.method}"


def pair_tasks(dataset):
    """The task ids of a prepared pairs dataset (after its checkpoint ran)."""
    manifest = checkpoints.prepare_pairs.get(dataset=dataset).output.manifest
    with open(manifest) as handle:
        return [task["id"] for task in json.load(handle)["tasks"]]


def oneshot_runs(layout_id):
    """(baseline, ours) runs of a one-shot table or figure: its first and second row."""
    rows = {}
    for cell in STUDY.layouts[layout_id].cells:
        rows.setdefault(cell.row, cell.runs)
    if len(rows) != 2:
        raise WorkflowError(f"{layout_id}: a one-shot layout needs two rows (SinCUT, + ScoreMix)")
    return list(rows.values())


def sifid_records(layout_id):
    runs = [run for row in oneshot_runs(layout_id) for run in row]
    return [
        f"{R}/{run.path}/tasks/{task}/metrics/sifid.json"
        for run in runs
        for task in pair_tasks(run.dataset)
    ]


def oneshot_spec(layout_id):
    layout = STUDY.layouts[layout_id]
    baseline, ours = (row[0] for row in oneshot_runs(layout_id))
    labels = ["DEMO: tiny networks, minutes of CPU training"] if STUDY.config["scale"] == "demo" else []
    if "procedural" in STUDY.dataset(ours.dataset):
        labels.append(PROCEDURAL_DATA)
    votes = layout.config.get("votes", {})
    return {
        "id": layout_id,
        "title": layout.config["title"],
        "labels": labels,
        "baseline": result_key(baseline),
        "ours": result_key(ours),
        "names": {result_key(run): cell.row for cell in layout.cells for run in cell.runs[:1]},
        "votes": "simulated" if "simulate" in votes else ("export" if votes_csv(layout_id) else None),
        "votes_path": votes.get("csv"),
        "vote_tasks": f"{R}/votes/{layout_id}/tasks.json",
    }


def votes_csv(layout_id):
    """The exported votes a table reads: simulated ones, the configured export, or none."""
    votes = STUDY.layouts[layout_id].config.get("votes", {})
    if "simulate" in votes:
        return f"{R}/votes/{layout_id}/votes.csv"
    path = votes.get("csv")
    return path if path and Path(path).is_file() else None


def oneshot_published(layout_id):
    path = Path(workflow.basedir) / "config" / "published" / f"{layout_id}.csv"
    return str(path) if path.exists() else []


def pairs_input(wildcards):
    dataset = STUDY.dataset(wildcards.dataset)
    if "procedural" in dataset or not Path(dataset["path"]).exists():
        return []  # made here, or missing: onstart stops a real run naming the path
    return [dataset["path"]]


def oneshot_part_input(wildcards):
    """A ScoreMix run's patches of its task, made from the source crops."""
    part = STUDY.scoremix_part(wildcards.method)
    if part is None:
        return {}
    return {"augmented": f"{R}/oneshot/{wildcards.dataset}/{wildcards.backbone}/{wildcards.task}/augment/{part['name']}/augmented.zip"}


def oneshot_scorenet(wildcards):
    part = STUDY.config["parts"][wildcards.part]
    return f"{R}/oneshot/{wildcards.dataset}/{wildcards.backbone}/{wildcards.task}/scorenets/{part['scorenet']}/scorenet.pt"


def crops_spec(wildcards):
    backbone = STUDY.config["backbones"][wildcards.backbone]
    return spec_json({"backbone": {"name": wildcards.backbone, **backbone}, "seed": 0})


def oneshot_run_spec(wildcards):
    spec = STUDY.run_spec(run_key(wildcards))
    spec["stand_in_data"] = "procedural" in STUDY.dataset(wildcards.dataset)
    return spec_json({**spec, "task": wildcards.task})


def sifid_spec(wildcards):
    run = run_key(wildcards)
    spec = STUDY.run_spec(run)
    return spec_json({
        "run": run.id, "result": result_key(run), "seed": run.seed, "scale": spec["scale"],
        "stand_in_data": "procedural" in STUDY.dataset(run.dataset), "device": spec["device"],
    })
