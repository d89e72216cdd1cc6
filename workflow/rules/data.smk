# Datasets: (download) -> prepare once -> nested subsets; feature-network weights;
# reference features of the full dataset and of each subset.

localrules:
    provision_inception,
    provision_network,
    prepare_dataset,
    subset,


for _name, _dataset in STUDY.config["datasets"].items():
    if _dataset.get("url"):

        rule:
            name:
                f"download_{_name}"
            output:
                _dataset["path"],
            params:
                url=_dataset["url"],
            conda:
                ENV
            log:
                f"{R}/logs/download/{_name}.log",
            shell:
                "python -m mixgan download --url {params.url:q} --out {output:q} > {log} 2>&1"


rule provision_inception:
    output:
        weights=INCEPTION,
        record=f"{INCEPTION}.json",
    params:
        source=STUDY.config["weights"]["inception"],
    conda:
        ENV
    log:
        f"{R}/logs/weights/inception.log",
    shell:
        "python -m mixgan weights --source {params.source:q} --out {output.weights:q} > {log} 2>&1"


rule provision_network:
    output:
        weights=f"{WEIGHTS}/{{network}}.pth",
        record=f"{WEIGHTS}/{{network}}.pth.json",
    params:
        source=lambda wc: (
            f"--source {shlex.quote(STUDY.config['weights'][wc.network])}"
            if STUDY.config["weights"].get(wc.network)
            else STAND_IN
        ),
    conda:
        ENV
    log:
        f"{R}/logs/weights/{{network}}.log",
    shell:
        "python -m mixgan weights --network {wildcards.network} {params.source} "
        "--out {output.weights:q} > {log} 2>&1"


rule prepare_dataset:
    input:
        dataset_input,
    output:
        zip=f"{R}/data/{{dataset}}/prepared.zip",
        manifest=f"{R}/data/{{dataset}}/prepared.json",
    params:
        spec=lambda wc: spec_json({"name": wc.dataset, "dataset": STUDY.dataset(wc.dataset)}),
    conda:
        ENV
    log:
        f"{R}/logs/prepare/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/prepare/{{dataset}}.tsv"
    shell:
        "python -m mixgan prepare --spec {params.spec:q} --out-zip {output.zip:q} "
        "--out-manifest {output.manifest:q} > {log} 2>&1"


rule subset:
    input:
        prepared=f"{R}/data/{{dataset}}/prepared.json",
    output:
        f"{R}/data/{{dataset}}/subsets/{{subset}}.json",
    params:
        spec=lambda wc: spec_json(
            {"subset": wc.subset, "subsets": STUDY.dataset(wc.dataset)["subsets"]}
        ),
    conda:
        ENV
    log:
        f"{R}/logs/subset/{{dataset}}/{{subset}}.log",
    shell:
        "python -m mixgan subset --spec {params.spec:q} --prepared {input.prepared:q} --out {output:q} > {log} 2>&1"


rule reference_features:
    input:
        zip=f"{R}/data/{{dataset}}/prepared.zip",
        subset=f"{R}/data/{{dataset}}/subsets/{{subset}}.json",
        weights=extractor_weights,
    output:
        f"{R}/data/{{dataset}}/features/{{extractor}}/{{subset}}.npz",
    params:
        device=STUDY.config["device"],
        batch=STUDY.config["evaluation"]["batch"],
        stand_in=STAND_IN,
    threads: res("features", "cpus")
    resources:
        gpu=res("features", "gpu"),
        mem_mb=res("features", "mem_mb"),
        runtime=runtime("features"),
    conda:
        ENV
    log:
        f"{R}/logs/features/{{dataset}}/{{extractor}}/{{subset}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{dataset}}/{{extractor}}/{{subset}}.tsv"
    shell:
        "python -m mixgan features --zip {input.zip:q} --subset {input.subset:q} --weights {input.weights:q} "
        "--extractor {wildcards.extractor} {params.stand_in} --out {output:q} --device {params.device} "
        "--batch {params.batch} --threads {threads} > {log} 2>&1"
