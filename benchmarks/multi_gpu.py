"""sec/kimg and peak memory of our StyleGAN2 step on several GPUs: one torchrun worker.

    python -m torch.distributed.run --standalone --nproc_per_node K benchmarks/multi_gpu.py \
        --precision bf16 --out part.json [--steps 16] [--smoke]

Each of the K processes trains its share of the global batch (256², batch 64: the paper
config's run; ``--smoke``: 32², batch 8, on the CPU with gloo) through the trainer of the
workflow (``mixgan.train.distributed``: gradient all-reduce, shared batch draws), on synthetic
data. Rank 0 writes the seconds per kimg of the global batch and every rank's peak GPU memory.
``gpu_suite.py multigpu`` runs it at 1 and at all visible GPUs per precision.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gpu_suite  # noqa: E402

from mixgan.train import distributed  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="tf32", choices=("fp32", "tf32", "bf16", "fp16"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = torch.device("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if args.smoke:
        torch.set_num_threads(1)
    with distributed.process_group(device):
        device = distributed.local_device(device)
        spec = gpu_suite._stylegan2_spec({"device": device, "smoke": args.smoke})
        spec["backbone"]["train"]["precision"] = args.precision
        pool = gpu_suite.synthetic_pool(32 if args.smoke else 1000, spec["resolution"])
        trainer = gpu_suite.gan_trainer(spec, pool)
        timing = gpu_suite._time_trainer(trainer, 4 if args.smoke else args.steps, device)
        peaks = [timing.pop("peak_gib")]
        if distributed.world_size() > 1:
            peaks = [None] * distributed.world_size()
            torch.distributed.all_gather_object(peaks, gpu_suite.peak_gib(device))
        if distributed.is_main():
            result = {
                "processes": distributed.world_size(),
                "precision": trainer.precision,
                "batch": spec["backbone"]["train"]["batch"],
                "batch_per_process": trainer.batch,
                "resolution": spec["resolution"],
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                **timing,
                "peak_gib_per_process": peaks,
            }
            args.out.write_text(json.dumps(result, indent=1))
        distributed.barrier()


if __name__ == "__main__":
    main()
