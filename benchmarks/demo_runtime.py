"""Benchmark: the embedded demo from an empty results/demo, wall time and peak memory.

    .venv/bin/python benchmarks/demo_runtime.py [--cores 2] [--keep]

Runs `snakemake --cores N --configfile config/demo.yaml` in the repository, samples the
resident memory of the whole process tree (Snakemake and its jobs, summed) twice a second,
and prints wall time, peak total RSS, and the slowest rules (from the benchmark files).
The target of the Foundation issue is <= 15 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "demo"


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep existing results/demo")
    args = parser.parse_args()
    if not args.keep and RESULTS.exists():
        shutil.rmtree(RESULTS)
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        str(args.cores),
        "--configfile",
        "config/demo.yaml",
    ]
    log_path = REPO / "results" / "demo_benchmark.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Output goes to a file, not a pipe: an unread pipe would fill up and block Snakemake.
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(process.pid)
        peak, own_cpu = 0, 0.0
        while process.poll() is None:
            peak = max(peak, tree_rss(watched))
            try:  # Snakemake's own process: scheduling, bookkeeping (its jobs not included)
                times = watched.cpu_times()
                own_cpu = times.user + times.system
            except psutil.Error:
                pass
            time.sleep(0.5)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        print(log_path.read_text()[-4000:])
        return process.returncode

    rows = []
    for path in (RESULTS / "benchmarks").rglob("*.tsv"):
        bench = pd.read_csv(path, sep="\t")
        rows.append(
            {
                "job": str(path.relative_to(RESULTS / "benchmarks").with_suffix("")),
                "seconds": float(bench["s"].iloc[0]),
                "max_rss_mb": float(bench["max_rss"].iloc[0]),
            }
        )
    jobs = pd.DataFrame(rows)
    jobs["rule"] = jobs["job"].str.split("/").str[0]
    per_rule = jobs.groupby("rule").agg(
        jobs=("job", "count"), seconds=("seconds", "sum"), max_rss_mb=("max_rss_mb", "max")
    )
    print(f"demo wall time: {wall:.0f} s ({wall / 60:.1f} min) with --cores {args.cores}")
    print(f"peak total RSS of Snakemake and its jobs: {peak / 2**20:.0f} MiB")
    print(f"CPU time of Snakemake's own process: {own_cpu:.0f} s")
    jobs.sort_values("seconds", ascending=False).to_csv(log_path.with_name("demo_jobs.csv"))
    print(f"every job's time: {log_path.with_name('demo_jobs.csv')}")
    print("time per rule (sum over its jobs, benchmarked rules only):")
    print(per_rule.sort_values("seconds", ascending=False).round(1).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
