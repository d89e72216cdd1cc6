# StarGAN v2 translation (ScoreMix Tables 5-6, Figures 7-8; ReMix Table 1). Runs train with
# `mixgan train` (rule train_gan, which runs the arch's own loop: mixgan.train.i2i); here each
# run's metric records by the official protocol (one job: the translations serve FID and
# LPIPS of both modes), and the sample grids of the figures.
ruleorder: i2i_eval > metric
ruleorder: i2i_grid > figure


rule i2i_eval:
    input:
        network=f"{RUN}/network.pt",
        data=f"{R}/data/{{dataset}}/prepared.zip",
        inception=INCEPTION,
        reference=lambda wc: reference_features(
            wc.dataset, "full", STUDY.translation_reference(wc.dataset)
        ),
        reference_subset=f"{R}/data/{{dataset}}/subsets/full.json",
        **(
            {"lpips_weights": network_weights(I2I_METRICS["lpips_latent"])}
            if "lpips_latent" in I2I_RECORDS
            else {}
        ),
    output:
        **{name: f"{RUN}/metrics/{name}-none.json" for name in I2I_RECORDS},
    params:
        spec=i2i_spec,
        lpips=lambda wc, input: (
            f"--lpips-weights {shlex.quote(input.lpips_weights)}"
            if "lpips_weights" in input.keys()
            else ""
        ),
        out=lambda wc, output: " ".join(
            shlex.quote(f"{name}={output[name]}") for name in I2I_RECORDS
        ),
    threads: res("features", "cpus")
    resources:
        gpu=res("features", "gpu"),
        mem_mb=res("features", "mem_mb"),
        runtime=runtime("features"),
    conda:
        ENV
    log:
        f"{R}/logs/i2i_eval/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/i2i_eval/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    shell:
        "python -m mixgan i2i-eval --spec {params.spec:q} --network {input.network:q} "
        "--data {input.data:q} --inception {input.inception:q} --reference {input.reference:q} "
        "--reference-subset {input.reference_subset:q} {params.lpips} "
        "--out {params.out} --threads {threads} > {log} 2>&1"


rule i2i_grid:
    input:
        unpack(i2i_grid_inputs),
    output:
        png=report(
            f"{R}/figures/{{layout}}.png",
            caption="../report/i2i_grid.rst",
            category=report_category,
            subcategory="{layout}",
            labels={"figure": "{layout}"},
        ),
        pdf=f"{R}/figures/{{layout}}.pdf",
    params:
        spec=i2i_grid_spec,
    wildcard_constraints:
        layout="|".join(map(re.escape, I2I_FIGURES)) or NEVER,
    threads: res("sample", "cpus")
    resources:
        gpu=res("sample", "gpu"),
        mem_mb=res("sample", "mem_mb"),
        runtime=runtime("sample"),
    conda:
        ENV
    log:
        f"{R}/logs/figures/{{layout}}.log",
    benchmark:
        f"{R}/benchmarks/figures/{{layout}}.tsv"
    shell:
        "python -m mixgan i2i-grid --spec {params.spec:q} --networks {input.networks:q} "
        "--data {input.data:q} --out-png {output.png:q} --out-pdf {output.pdf:q} "
        "--threads {threads} > {log} 2>&1"
