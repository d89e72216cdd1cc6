# ReMix Tables 2-3: a dataset (Cityscapes pairs / CASIA NIR-VIS fold 1, or their procedural
# stand-ins) -> one SPADE or LightCNN-StyleGAN2 run per (subset, method, seed) -> one scoring
# job per table (every run and the evaluation-only row) -> the table.
wildcard_constraints:
    remix_table="|".join(REMIX_TABLES) or NEVER,
    remix_dataset="|".join(REMIX_DATASETS) or NEVER,


ruleorder: remix_table > table
ruleorder: remix_train > train_gan


rule remix_prepare:
    output:
        data=f"{R}/data/{{remix_dataset}}/remix.npz",
        manifest=f"{R}/data/{{remix_dataset}}/remix.json",
    params:
        spec=lambda wc: spec_json({"name": wc.remix_dataset, "dataset": STUDY.dataset(wc.remix_dataset)}),
    resources:
        mem_mb=res("prepare", "mem_mb"),
        runtime=runtime("prepare"),
    conda:
        ENV
    log:
        f"{R}/logs/remix/prepare/{{remix_dataset}}.log",
    benchmark:
        f"{R}/benchmarks/remix/prepare/{{remix_dataset}}.tsv"
    shell:
        "python -m mixgan remix-prepare --spec {params.spec:q} --out {output.data:q} "
        "--manifest {output.manifest:q} > {log} 2>&1"


rule remix_train:
    input:
        data=f"{R}/data/{{dataset}}/remix.npz",
    output:
        generator=f"{RUN}/generator.pt",
        run_json=f"{RUN}/run.json",
    wildcard_constraints:
        backbone="|".join(REMIX_BACKBONES) or NEVER,
    params:
        spec=remix_train_spec,
        run_dir=RUN,
    threads: res("train", "cpus")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=runtime("train"),
    conda:
        ENV
    log:
        f"{R}/logs/remix/train/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/remix/train/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    shell:
        "python -m mixgan remix-train --spec {params.spec:q} --data {input.data:q} "
        "--run-dir {params.run_dir:q} --generator {output.generator:q} "
        "--run-json {output.run_json:q} --threads {threads} >> {log} 2>&1"


rule remix_eval:
    input:
        data=lambda wc: f"{R}/data/{remix_runs(wc.remix_table)[0].dataset}/remix.npz",
        generators=lambda wc: [run_path(run, "generator.pt") for run in remix_runs(wc.remix_table)],
        inception=INCEPTION,
    output:
        f"{R}/remix/{{remix_table}}/results.json",
    params:
        spec=lambda wc: spec_json(remix_eval_spec(wc.remix_table)),
    threads: res("metric", "cpus")
    resources:
        gpu=res("features", "gpu"),
        mem_mb=res("features", "mem_mb"),
        runtime=runtime("features"),
    conda:
        ENV
    log:
        f"{R}/logs/remix/eval/{{remix_table}}.log",
    benchmark:
        f"{R}/benchmarks/remix/eval/{{remix_table}}.tsv"
    shell:
        "python -m mixgan remix-eval --spec {params.spec:q} --data {input.data:q} "
        "--generators {input.generators:q} --inception {input.inception:q} --out {output:q} "
        "--threads {threads} > {log} 2>&1"


rule remix_table:
    input:
        results=f"{R}/remix/{{remix_table}}/results.json",
        published=lambda wc: oneshot_published(wc.remix_table),
    output:
        csv=report(
            f"{R}/tables/{{remix_table}}.csv",
            caption="../report/remix_table.rst",
            category=PAPER_TITLES.get("remix", "remix"),
            subcategory="{remix_table}",
            labels={"table": "{remix_table}", "format": "tidy csv"},
        ),
        md=f"{R}/tables/{{remix_table}}.md",
        tex=f"{R}/tables/{{remix_table}}.tex",
        ranking=f"{R}/tables/{{remix_table}}.ranking.csv",
    params:
        spec=lambda wc: spec_json(remix_table_spec(wc.remix_table)),
        published=lambda wc, input: f"--published {shlex.quote(input.published)}" if input.published else "",
    resources:
        mem_mb=res("default", "mem_mb"),
        runtime=runtime("default"),
    conda:
        ENV
    log:
        f"{R}/logs/tables/{{remix_table}}.log",
    benchmark:
        f"{R}/benchmarks/tables/{{remix_table}}.tsv"
    shell:
        "python -m mixgan remix-table --spec {params.spec:q} --results {input.results:q} "
        "{params.published} --out-csv {output.csv:q} --out-md {output.md:q} "
        "--out-tex {output.tex:q} --out-ranking {output.ranking:q} > {log} 2>&1"
