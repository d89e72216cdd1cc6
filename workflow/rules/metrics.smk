# Metrics read samples, never retrain: Inception features of a run's samples are computed
# once; each (metric, reference) record is a small JSON computed from cached features. Cost
# metrics (GPU-hours) read the run's records instead.


rule sample_features:
    input:
        samples=f"{RUN}/samples.zip",
        weights=INCEPTION,
    output:
        f"{RUN}/features/inception.npz",
    params:
        device=STUDY.config["device"],
        batch=STUDY.config["evaluation"]["batch"],
    threads: res("features", "cpus")
    resources:
        gpu=res("features", "gpu"),
        mem_mb=res("features", "mem_mb"),
        runtime=runtime("features"),
    conda:
        ENV
    log:
        f"{R}/logs/features/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    shell:
        "python -m mixgan features --zip {input.samples:q} --weights {input.weights:q} --out {output:q} "
        "--device {params.device} --batch {params.batch} --threads {threads} > {log} 2>&1"


rule metric:
    input:
        unpack(metric_inputs),
    output:
        f"{RUN}/metrics/{{metric}}-{{reference}}.json",
    params:
        spec=metric_spec,
        inputs=metric_args,
    resources:
        gpu=res("metric", "gpu"),
        mem_mb=res("metric", "mem_mb"),
        runtime=runtime("metric"),
    conda:
        ENV
    log:
        f"{R}/logs/metric/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{metric}}-{{reference}}.log",
    benchmark:
        f"{R}/benchmarks/metric/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{metric}}-{{reference}}.tsv"
    shell:
        "python -m mixgan metric --spec {params.spec:q} {params.inputs} --out {output:q} > {log} 2>&1"
