# Metrics read samples, never retrain: a run's samples go through Inception once per resize
# convention, the pass writing every output its records read (pool, sFID channels, class
# probabilities: Study.feature_caches), and through VGG-16 once; each
# (metric, reference, protocol variant) record is a small JSON computed from cached features
# (the variant, e.g. "-tf_bilinear-n50000", names the resize convention, sFID layer, LPIPS
# network and sample count: mixgan.evaluation). LPIPS reads the samples, PPL the generator, cost metrics (GPU-
# and wall-clock hours) the run's records.


rule sample_features:
    input:
        samples=f"{RUN}/samples.zip",
        weights=extractor_weights,
    output:
        f"{RUN}/features/{{extractor}}.npz",
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
        f"{R}/logs/features/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{extractor}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{extractor}}.tsv"
    shell:
        "python -m mixgan features --zip {input.samples:q} --weights {input.weights:q} --out {output:q} "
        "--extractor {wildcards.extractor} {params.stand_in} --device {params.device} "
        "--batch {params.batch} --threads {threads} > {log} 2>&1"


rule metric:
    input:
        unpack(metric_inputs),
    output:
        f"{RUN}/metrics/{{metric}}-{{reference}}{{variant}}.json",
    params:
        spec=metric_spec,
        inputs=metric_args,
        device=STUDY.config["device"],
    threads: res("metric", "cpus")
    resources:
        gpu=res("metric", "gpu"),
        mem_mb=res("metric", "mem_mb"),
        runtime=runtime("metric"),
    conda:
        ENV
    log:
        f"{R}/logs/metric/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{metric}}-{{reference}}{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/metric/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/{{metric}}-{{reference}}{{variant}}.tsv"
    shell:
        "python -m mixgan metric --spec {params.spec:q} {params.inputs} --device {params.device} "
        "--threads {threads} --out {output:q} > {log} 2>&1"


# One interval-uniformity pass of a generator serves MixDL's three interval records
ruleorder: ppl_intervals > metric


rule ppl_intervals:
    input:
        network=f"{RUN}/network.pt",
        weights=network_weights(GENERATOR_METRICS[PPL_INTERVAL_METRICS[0]]),
    output:
        **{m: f"{RUN}/metrics/{m}-none{{variant}}.json" for m in PPL_INTERVAL_METRICS},
    params:
        spec=ppl_interval_spec,
        siblings=ppl_interval_siblings,
        device=STUDY.config["device"],
    threads: res("metric", "cpus")
    resources:
        gpu=res("metric", "gpu"),
        mem_mb=res("metric", "mem_mb"),
        runtime=runtime("metric"),
    conda:
        ENV
    log:
        f"{R}/logs/metric/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/ppl_intervals{{variant}}.log",
    benchmark:
        f"{R}/benchmarks/metric/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}/ppl_intervals{{variant}}.tsv"
    shell:
        "python -m mixgan metric --spec {params.spec:q} --network {input.network:q} "
        "--weights {input.weights:q} --device {params.device} --threads {threads} "
        "--out {output.ppl_interval_mean:q} --out-siblings {params.siblings} > {log} 2>&1"
