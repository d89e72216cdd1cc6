# Helpers of the StarGAN v2 translation rules (workflow/rules/translation.smk).
from mixgan.i2i_settings import stargan2_options  # noqa: E402
from mixgan.registry import I2I_METRICS, metric_pending  # noqa: E402

# the records an evaluation job writes: LPIPS only with AlexNet weights (or allowed stand-ins)
I2I_RECORDS = [m for m in I2I_METRICS if not metric_pending(m, STUDY.config["weights"])]

I2I_FIGURES = [
    layout.id
    for layout in STUDY.layouts_in("figures")
    if layout.config.get("kind") == "sample_grid"
    and len(layout.pending_cells) < len(layout.cells)
    and STUDY.config["backbones"][layout.cells[0].runs[0].backbone]["arch"] == "stargan2"
]

for _run in STUDY.runnable_runs():  # bad options or a ScoreMix set without domains stop here
    _backbone = STUDY.config["backbones"][_run.backbone]
    if _backbone["arch"] != "stargan2":
        continue
    try:
        stargan2_options(_backbone, f"backbones.{_run.backbone}.options")
    except ConfigError as error:
        raise WorkflowError(str(error)) from None
    _part = STUDY.scoremix_part(_run.method)
    if _part and _part["mu"] != "growing" and _part["mu"] > 0 and _part["pairs"] != "same_class":
        raise WorkflowError(
            f"parts.{_part['name']}.pairs: '{_part['pairs']}', but the translation run "
            f"{_run.id} needs same_class (an augmented source keeps its pair's domain)"
        )


def i2i_spec(wildcards):
    run = run_key(wildcards)
    spec = STUDY.run_spec(run)
    return spec_json(
        {
            "run": run.id,
            "seed": run.seed,
            "device": spec["device"],
            "scale": spec["scale"],
            "stand_in_data": spec["stand_in_data"],
            "backbone": spec["backbone"],
            "resize": STUDY.translation_resize,
        }
    )


def i2i_grid_inputs(wildcards):
    rows = {}
    for cell in STUDY.layouts[wildcards.layout].cells:
        if not cell.pending:
            rows.setdefault(cell.row, cell.runs[0])
    data = {f"{R}/data/{run.dataset}/prepared.zip" for run in rows.values()}
    if len(data) != 1:
        raise WorkflowError(f"figures.{wildcards.layout}: its rows must share one dataset")
    return {"networks": [run_path(run, "network.pt") for run in rows.values()], "data": data.pop()}


def i2i_grid_spec(wildcards):
    spec = layout_spec(wildcards.layout)
    rows = list(dict.fromkeys(c["row"] for c in spec["cells"] if not c["pending"]))
    run = next(c for c in STUDY.layouts[wildcards.layout].cells if not c.pending).runs[0]
    options = stargan2_options(STUDY.config["backbones"][run.backbone])
    return spec_json(
        {
            "title": spec["title"],
            "labels": spec["labels"],
            "rows": rows,
            "sources": options["grid_sources"],
            "device": STUDY.config["device"],
        }
    )
