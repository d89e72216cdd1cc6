# One-shot translation (ScoreMix Table 7, Figure 9): a pairs dataset -> per task and method
# and seed one SinCUT run (ScoreMix: a score network and ScoreMix patches of the task's source
# crops) -> its SIFID record -> the vote page's tasks, the votes, the table and the figure.
# The tasks are known once the pairs are prepared (a checkpoint), so a dry run of a study
# whose pairs folder is not there yet stops at prepare_pairs.

localrules:
    prepare_pairs,
    oneshot_vote_tasks,
    oneshot_simulate_votes,
    oneshot_table,
    oneshot_figure,


wildcard_constraints:
    task=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    oneshot_table="|".join(ONESHOT_TABLES) or NEVER,
    oneshot_figure="|".join(ONESHOT_FIGURES) or NEVER,


ruleorder: oneshot_table > table
ruleorder: oneshot_figure > figure


checkpoint prepare_pairs:
    input:
        pairs_input,
    output:
        zip=f"{R}/data/{{dataset}}/pairs.zip",
        manifest=f"{R}/data/{{dataset}}/pairs.json",
    params:
        spec=lambda wc: spec_json({"name": wc.dataset, "dataset": STUDY.dataset(wc.dataset)}),
    conda:
        ENV
    log:
        f"{R}/logs/prepare/{{dataset}}.pairs.log",
    benchmark:
        f"{R}/benchmarks/prepare/{{dataset}}.pairs.tsv"
    shell:
        "python -m mixgan prepare --spec {params.spec:q} --out-zip {output.zip:q} "
        "--out-manifest {output.manifest:q} > {log} 2>&1"


rule oneshot_crops:
    input:
        pairs=f"{R}/data/{{dataset}}/pairs.zip",
    output:
        zip=f"{TASK_DATA}/crops.zip",
        manifest=f"{TASK_DATA}/crops.json",
    params:
        spec=crops_spec,
    resources:
        mem_mb=res("default", "mem_mb"),
        runtime=runtime("default"),
    conda:
        ENV
    log:
        f"{R}/logs/oneshot/crops/{{dataset}}/{{backbone}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/oneshot/crops/{{dataset}}/{{backbone}}/{{task}}.tsv"
    shell:
        "python -m mixgan oneshot-crops --spec {params.spec:q} --pairs {input.pairs:q} "
        "--task {wildcards.task} --out-zip {output.zip:q} --out-json {output.manifest:q} > {log} 2>&1"


rule oneshot_scorenet:
    input:
        data=f"{TASK_DATA}/crops.zip",
        subset=f"{TASK_DATA}/crops.json",
    output:
        network=f"{TASK_DATA}/scorenets/{{scorenet}}/scorenet.pt",
        summary=f"{TASK_DATA}/scorenets/{{scorenet}}/summary.json",
    params:
        spec=lambda wc: spec_json({
            **STUDY.scorenet_spec(wc.dataset, "full", wc.scorenet),
            "resolution": sincut_options(STUDY.config["backbones"][wc.backbone].get("options", {})).get("crop_size", 128),
            "task": wc.task,
        }),
        out_dir=lambda wc, output: str(Path(output.network).parent),
    threads: res("scorenet", "cpus")
    resources:
        gpu=res("scorenet", "gpu"),
        mem_mb=res("scorenet", "mem_mb"),
        runtime=runtime("scorenet"),
    conda:
        ENV
    log:
        f"{R}/logs/oneshot/scorenet/{{dataset}}/{{backbone}}/{{task}}/{{scorenet}}.log",
    benchmark:
        f"{R}/benchmarks/oneshot/scorenet/{{dataset}}/{{backbone}}/{{task}}/{{scorenet}}.tsv"
    shell:
        "python -m mixgan train-scorenet --spec {params.spec:q} --data {input.data:q} --subset {input.subset:q} "
        "--out-dir {params.out_dir:q} --threads {threads} > {log} 2>&1"


rule oneshot_augment:
    input:
        data=f"{TASK_DATA}/crops.zip",
        subset=f"{TASK_DATA}/crops.json",
        scorenet=oneshot_scorenet,
    output:
        images=f"{TASK_DATA}/augment/{{part}}/augmented.zip",
        record=f"{TASK_DATA}/augment/{{part}}/augmented.json",
    params:
        spec=lambda wc: spec_json({**STUDY.augment_spec(wc.dataset, "full", wc.part), "task": wc.task}),
    threads: res("augment", "cpus")
    resources:
        gpu=res("augment", "gpu"),
        mem_mb=res("augment", "mem_mb"),
        runtime=runtime("augment"),
    conda:
        ENV
    log:
        f"{R}/logs/oneshot/augment/{{dataset}}/{{backbone}}/{{task}}/{{part}}.log",
    benchmark:
        f"{R}/benchmarks/oneshot/augment/{{dataset}}/{{backbone}}/{{task}}/{{part}}.tsv"
    shell:
        "python -m mixgan augment --spec {params.spec:q} --data {input.data:q} --subset {input.subset:q} "
        "--scorenet {input.scorenet:q} --out-zip {output.images:q} --out-json {output.record:q} "
        "--threads {threads} > {log} 2>&1"


rule oneshot_train:
    input:
        unpack(oneshot_part_input),
        pairs=f"{R}/data/{{dataset}}/pairs.zip",
    output:
        image=f"{TASK}/translated.png",
        run_json=f"{TASK}/run.json",
    params:
        spec=oneshot_run_spec,
        run_dir=TASK,
        augmented=lambda wc, input: f"--augmented {shlex.quote(input.augmented)}" if "augmented" in input.keys() else "",
    threads: res("train", "cpus")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=runtime("train"),
    conda:
        ENV
    log:
        f"{R}/logs/oneshot/train/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/oneshot/train/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}.tsv"
    shell:
        "python -m mixgan oneshot-train --spec {params.spec:q} --pairs {input.pairs:q} --task {wildcards.task} "
        "{params.augmented} --run-dir {params.run_dir:q} --image {output.image:q} "
        "--run-json {output.run_json:q} --threads {threads} >> {log} 2>&1"


rule oneshot_sifid:
    input:
        pairs=f"{R}/data/{{dataset}}/pairs.zip",
        image=f"{TASK}/translated.png",
        inception=INCEPTION,
    output:
        f"{TASK}/metrics/sifid.json",
    params:
        spec=sifid_spec,
    threads: res("metric", "cpus")
    resources:
        gpu=res("metric", "gpu"),
        mem_mb=res("metric", "mem_mb"),
        runtime=runtime("metric"),
    conda:
        ENV
    log:
        f"{R}/logs/oneshot/sifid/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/oneshot/sifid/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{task}}.tsv"
    shell:
        "python -m mixgan oneshot-sifid --spec {params.spec:q} --pairs {input.pairs:q} --task {wildcards.task} "
        "--image {input.image:q} --inception {input.inception:q} --out {output:q} --threads {threads} > {log} 2>&1"


rule oneshot_vote_tasks:
    input:
        pairs=lambda wc: f"{R}/data/{oneshot_runs(wc.oneshot_table)[0][0].dataset}/pairs.zip",
        sifid=lambda wc: sifid_records(wc.oneshot_table),
    output:
        f"{R}/votes/{{oneshot_table}}/tasks.json",
    conda:
        ENV
    log:
        f"{R}/logs/votes/{{oneshot_table}}.tasks.log",
    shell:
        "python -m mixgan oneshot-vote-tasks --pairs {input.pairs:q} --sifid {input.sifid:q} --out {output:q} > {log} 2>&1"


rule oneshot_simulate_votes:
    input:
        f"{R}/votes/{{oneshot_table}}/tasks.json",
    output:
        csv=f"{R}/votes/{{oneshot_table}}/votes.csv",
        db=f"{R}/votes/{{oneshot_table}}/simulated.sqlite",
    params:
        raters=lambda wc: STUDY.layouts[wc.oneshot_table].config["votes"]["simulate"]["raters"],
        seed=lambda wc: STUDY.layouts[wc.oneshot_table].config["votes"]["simulate"]["seed"],
    conda:
        ENV
    log:
        f"{R}/logs/votes/{{oneshot_table}}.simulated.log",
    shell:
        "(rm -f {output.db:q} && python -m mixgan vote-simulate --tasks {input:q} --db {output.db:q} "
        "--raters {params.raters} --seed {params.seed} && "
        "python -m mixgan vote-export --db {output.db:q} --out {output.csv:q}) > {log} 2>&1"


rule oneshot_table:
    input:
        sifid=lambda wc: sifid_records(wc.oneshot_table),
        tasks=f"{R}/votes/{{oneshot_table}}/tasks.json",
        votes=lambda wc: votes_csv(wc.oneshot_table) or [],
        published=lambda wc: oneshot_published(wc.oneshot_table),
    output:
        csv=report(
            f"{R}/tables/{{oneshot_table}}.csv",
            caption="../report/oneshot_table.rst",
            category="ScoreMix",
            subcategory="{oneshot_table}",
            labels={"table": "{oneshot_table}", "format": "tidy csv"},
        ),
        md=f"{R}/tables/{{oneshot_table}}.md",
        tex=f"{R}/tables/{{oneshot_table}}.tex",
        ranking=f"{R}/tables/{{oneshot_table}}.ranking.csv",
    params:
        spec=lambda wc: spec_json(oneshot_spec(wc.oneshot_table)),
        votes=lambda wc, input: f"--votes {shlex.quote(input.votes)}" if input.votes else "",
        published=lambda wc, input: f"--published {shlex.quote(input.published)}" if input.published else "",
    conda:
        ENV
    log:
        f"{R}/logs/tables/{{oneshot_table}}.log",
    shell:
        "python -m mixgan oneshot-table --spec {params.spec:q} --sifid {input.sifid:q} {params.votes} "
        "{params.published} --out-csv {output.csv:q} --out-md {output.md:q} --out-tex {output.tex:q} "
        "--out-ranking {output.ranking:q} > {log} 2>&1"


rule oneshot_figure:
    input:
        pairs=lambda wc: f"{R}/data/{oneshot_runs(wc.oneshot_figure)[0][0].dataset}/pairs.zip",
        sifid=lambda wc: sifid_records(wc.oneshot_figure),
    output:
        png=report(
            f"{R}/figures/{{oneshot_figure}}.png",
            caption="../report/oneshot_figure.rst",
            category="ScoreMix",
            subcategory="{oneshot_figure}",
            labels={"figure": "{oneshot_figure}"},
        ),
        pdf=f"{R}/figures/{{oneshot_figure}}.pdf",
    params:
        spec=lambda wc: spec_json(oneshot_spec(wc.oneshot_figure)),
    conda:
        ENV
    log:
        f"{R}/logs/figures/{{oneshot_figure}}.log",
    shell:
        "python -m mixgan oneshot-figure --spec {params.spec:q} --pairs {input.pairs:q} "
        "--sifid {input.sifid:q} --out-png {output.png:q} --out-pdf {output.pdf:q} > {log} 2>&1"
