"""The options of a StarGAN v2 backbone (``backbones.<name>.options``) and their defaults.

Import-light (no torch): the Snakefile validates them before any job runs. The defaults are
the official AFHQ model and training command (clovaai/stargan-v2 main.py and its README;
sources per value in ``config/protocol/translation.yaml``); the evaluation options are the
official protocol's (main.py ``--num_outs_per_domain`` 10, ``--val_batch_size`` 32).
"""

from __future__ import annotations

from typing import Any

from mixgan.config import backbone_options
from mixgan.errors import ConfigError

#: the backbone's ``options`` and their defaults: the official AFHQ model and training command
#: (sources: config/protocol/translation.yaml); ``base_dim`` None = 2**14 // img_size
OPTIONS: dict[str, Any] = {
    "latent_dim": 16, "style_dim": 64, "max_conv_dim": 512, "hidden_dim": 512,
    "base_dim": None, "lambda_reg": 1.0, "lambda_sty": 1.0, "lambda_ds": 2.0,
    "lambda_cyc": 1.0, "ds_iter": 100000, "total_iters": 100000, "batch": 8, "lr": 1e-4,
    "f_lr": 1e-6, "beta1": 0.0, "beta2": 0.99, "weight_decay": 1e-4, "ema_beta": 0.999,
    "randcrop_prob": 0.5, "mirror": True, "mix_probability": 0.25,
    "checkpoint_every": 5000, "log_every": 100,
    "num_outs": 10, "eval_batch": 32, "eval_sources": 0, "grid_sources": 6,
}  # fmt: skip


def stargan2_options(backbone: dict[str, Any], where: str = "options") -> dict[str, Any]:
    """The backbone's ``options`` over :data:`OPTIONS`; an unknown key is a ConfigError."""
    options = backbone_options({"arch": "stargan2", **backbone}, OPTIONS, where)
    if options["num_outs"] < 2:
        raise ConfigError([f"{where}.num_outs: LPIPS needs at least 2 outputs per source"])
    return options
