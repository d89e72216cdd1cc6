# Helpers of the ReMix Tables 2-3 rules (workflow/rules/remix_tasks.smk).
from mixgan.remix_tasks import EVALUATION_ROWS, TRACK_ARCHS  # noqa: E402


def _track_arch(layout):
    return STUDY.config["backbones"][layout.cells[0].runs[0].backbone]["arch"]


REMIX_TABLES = [
    layout.id
    for layout in STUDY.layouts_in("tables")
    if _track_arch(layout) in TRACK_ARCHS and len(layout.pending_cells) < len(layout.cells)
]
REMIX_BACKBONES = [name for name, b in STUDY.config["backbones"].items() if b["arch"] in TRACK_ARCHS]
REMIX_DATASETS = sorted(
    {run.dataset for table in REMIX_TABLES for cell in STUDY.layouts[table].cells for run in cell.runs}
)


def remix_weights():
    weights = STUDY.config["weights"]
    return {"pretrained": weights.get("pretrained", {}), "allow_standins": weights["allow_standins"]}


def remix_runs(table):
    layout = STUDY.layouts[table]
    return sorted({run for cell in layout.cells if not cell.pending for run in cell.runs})


def remix_train_spec(wildcards):
    run = run_key(wildcards)
    dataset = STUDY.dataset(run.dataset)
    size = None if run.subset == "full" else dataset["subsets"]["sizes"][run.subset]
    return spec_json({
        **STUDY.run_spec(run), "size": size, "weights": remix_weights(),
        "stand_in_data": "procedural" in dataset,
    })


def remix_eval_spec(table):
    run = remix_runs(table)[0]
    return {
        "table": table, "arch": _track_arch(STUDY.layouts[table]),
        "runs": [r.id for r in remix_runs(table)], "evaluation_run": f"evaluation/{table}/seed0",
        "stand_in_data": "procedural" in STUDY.dataset(run.dataset), "weights": remix_weights(),
        "resize": STUDY.layout_evaluation(table)["resize"], "device": STUDY.config["device"],
        "scale": STUDY.config["scale"],
    }


def remix_table_spec(table):
    """The table's spec with its evaluation-only row (Real Data / Raw Input) first."""
    spec = layout_spec(table)
    label, metrics = EVALUATION_ROWS[_track_arch(STUDY.layouts[table])]
    columns = {cell["column"]: cell["published_column"] for cell in spec["cells"]}
    extra = [
        {"row": label, "column": column, "published_row": label, "published_column": published,
         "metric": metric, "reference": "none", "variant": "", "pending": None, "files": [],
         "runs": [f"evaluation/{table}/seed0"]}
        for column, published in columns.items()
        for metric in spec["metrics"] if metric in metrics
    ]
    if "procedural" in STUDY.dataset(remix_runs(table)[0].dataset):
        spec["labels"] = [*spec["labels"], PROCEDURAL_DATA]
    return {**spec, "cells": extra + spec["cells"]}
