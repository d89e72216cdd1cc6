# GAN runs: one job per (dataset, subset, backbone, method, seed), then its samples.
# Checkpoints live in <run>/train/ (not a declared output), so a killed, timed-out or
# pre-empted job resumes where it stopped when Snakemake (or SLURM) starts it again.
# resources.train.gpu: N > 1 (or processes: N without GPUs) runs it under torchrun with N
# processes in the job's one task (mixgan.train.launch, mixgan.train.distributed).

from mixgan.train.launch import launcher, train_processes  # noqa: E402

TRAIN_PROCESSES = train_processes(res("train", "gpu"), res("train", "processes"))


rule train_gan:
    input:
        unpack(train_inputs),
    output:
        network=f"{RUN}/network.pt",
        curve=f"{RUN}/curve.csv",
        run_json=f"{RUN}/run.json",
    params:
        spec=lambda wc: spec_json(STUDY.run_spec(run_key(wc))),
        run_dir=RUN,
        optional=optional_train_args,
        launch=launcher(TRAIN_PROCESSES),
    threads: res("train", "cpus")
    resources:
        gpu=res("train", "gpu"),
        mem_mb=res("train", "mem_mb"),
        runtime=runtime("train"),
    conda:
        ENV
    log:
        f"{R}/logs/train/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    shell:
        "{params.launch} -m mixgan train --spec {params.spec:q} --data {input.data:q} --subset {input.subset:q} "
        "--reference {input.reference:q} --inception {input.inception:q} {params.optional} "
        "--run-dir {params.run_dir:q} --network {output.network:q} --curve {output.curve:q} "
        "--run-json {output.run_json:q} --threads {threads} >> {log} 2>&1"


rule sample:
    input:
        model=sample_model,
    output:
        f"{RUN}/samples.zip",
    params:
        spec=lambda wc: spec_json(STUDY.run_spec(run_key(wc))),
        num_samples=lambda wc: STUDY.sample_count(run_key(wc)),  # the most its records use
        batch=STUDY.config["evaluation"]["batch"],
        device=STUDY.config["device"],
    threads: res("sample", "cpus")
    resources:
        gpu=res("sample", "gpu"),
        mem_mb=res("sample", "mem_mb"),
        runtime=runtime("sample"),
    conda:
        ENV
    log:
        f"{R}/logs/sample/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/sample/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}.tsv"
    shell:
        "python -m mixgan sample --spec {params.spec:q} --model {input.model:q} --count {params.num_samples} --seed {wildcards.seed} "
        "--batch {params.batch} --device {params.device} --out {output:q} --threads {threads} "
        "> {log} 2>&1"
