# ScoreMix: the score network of a training subset, then its static augmented set(s).


rule train_scorenet:
    input:
        data=f"{R}/data/{{dataset}}/prepared.zip",
        subset=f"{R}/data/{{dataset}}/subsets/{{subset}}.json",
    output:
        network=f"{R}/scorenets/{{dataset}}/{{subset}}/{{scorenet}}/scorenet.pt",
        summary=f"{R}/scorenets/{{dataset}}/{{subset}}/{{scorenet}}/summary.json",
    params:
        spec=lambda wc: spec_json(STUDY.scorenet_spec(wc.dataset, wc.subset, wc.scorenet)),
        out_dir=lambda wc, output: str(Path(output.network).parent),
    threads: res("scorenet", "cpus")
    resources:
        gpu=res("scorenet", "gpu"),
        mem_mb=res("scorenet", "mem_mb"),
        runtime=runtime("scorenet"),
    conda:
        ENV
    log:
        f"{R}/logs/scorenet/{{dataset}}/{{subset}}/{{scorenet}}.log",
    benchmark:
        f"{R}/benchmarks/scorenet/{{dataset}}/{{subset}}/{{scorenet}}.tsv"
    shell:
        "python -m mixgan train-scorenet --spec {params.spec:q} --data {input.data:q} --subset {input.subset:q} "
        "--out-dir {params.out_dir:q} --threads {threads} > {log} 2>&1"


rule scoremix_augment:
    input:
        data=f"{R}/data/{{dataset}}/prepared.zip",
        subset=f"{R}/data/{{dataset}}/subsets/{{subset}}.json",
        scorenet=augment_scorenet,
    output:
        images=f"{R}/augment/{{dataset}}/{{subset}}/{{part}}/augmented.zip",
        record=f"{R}/augment/{{dataset}}/{{subset}}/{{part}}/augmented.json",
    params:
        spec=lambda wc: spec_json(STUDY.augment_spec(wc.dataset, wc.subset, wc.part)),
    threads: res("augment", "cpus")
    resources:
        gpu=res("augment", "gpu"),
        mem_mb=res("augment", "mem_mb"),
        runtime=runtime("augment"),
    conda:
        ENV
    log:
        f"{R}/logs/augment/{{dataset}}/{{subset}}/{{part}}.log",
    benchmark:
        f"{R}/benchmarks/augment/{{dataset}}/{{subset}}/{{part}}.tsv"
    shell:
        "python -m mixgan augment --spec {params.spec:q} --data {input.data:q} --subset {input.subset:q} "
        "--scorenet {input.scorenet:q} --out-zip {output.images:q} --out-json {output.record:q} "
        "--threads {threads} > {log} 2>&1"
