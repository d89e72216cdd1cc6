"""DRN-D-105 segmentation network (Yu, Koltun, Funkhouser, CVPR 2017): SPADE's Cityscapes
segmenter, used for the mIoU and pixel accuracy of ReMix Table 3.

A re-implementation of fyu/drn (commit d75db2e) ``segment.py`` ``DRNSeg('drn_d_105', 19)``
with the same parameter names, so the released Cityscapes model
(``drn_d_105_cityscapes.pth``, README "pretrained DRN models on Cityscapes": a bare
``state_dict`` of ``DRNSeg``, loaded by ``segment.py`` ``test_seg`` with
``single_model.load_state_dict(torch.load(args.pretrained))``) and ``segment.py``'s own training
checkpoints (``{"state_dict": ...}`` with ``module.`` keys) load with :func:`load_drn_seg`.

Settings and where they come from:

* ``drn.py`` ``drn_d_105``: ``DRN(Bottleneck, [1, 1, 3, 4, 23, 3, 1, 1], arch='D')``,
  channels ``(16, 32, 64, 128, 256, 512, 512, 512)`` (``DRN.__init__`` default);
* arch D (``DRN.__init__``): ``layer0`` = 7×7 conv 3→16 (no bias), BN, ReLU; ``layer1``,
  ``layer2`` = 3×3 conv/BN/ReLU stacks (``_make_conv_layers``, layer2 stride 2); ``layer3``
  –``layer6`` = Bottleneck stages (expansion 4) with strides 2, 2, 1, 1 and dilations 1, 1, 2, 4
  (``_make_layer``: the first block of a ``new_level=False`` stage already uses the full
  dilation); ``layer7``, ``layer8`` = conv/BN/ReLU with dilation 2 and 1; output stride 8;
* ``DRNSeg``: ``base = nn.Sequential(*list(model.children())[:-2])`` (layer0–layer8: the
  average pool and the 1000-way ``fc`` are dropped, so the keys are ``base.0.*``–``base.8.*``),
  ``seg = Conv2d(512, classes, 1)``, ``up = ConvTranspose2d(classes, classes, 16, stride=8,
  padding=4, groups=classes, bias=False)`` with fixed bilinear weights (``fill_up_weights``,
  ``requires_grad = False`` but still a parameter, so the checkpoint holds ``up.weight``);
  ``forward`` returns ``(log_softmax(up(seg(base(x)))), seg(base(x)))``;
* BatchNorm: ``nn.BatchNorm2d`` defaults (eps 1e-5);
* input: RGB in [0, 1] normalised with Cityscapes' ``info.json`` mean/std
  (``datasets/cityscapes/info.json``; :data:`CITYSCAPES_MEAN`, :data:`CITYSCAPES_STD`);
* 19 classes, label 255 ignored (README: "Invalid pixels can be labeled as 255").
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from mixgan.nets.official_checkpoint import load_official_state

CITYSCAPES_CLASSES = 19  # README.md: "It is 19 for Cityscapes"
CITYSCAPES_MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)  # info.json
CITYSCAPES_STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)  # info.json
D105_LAYERS = (1, 1, 3, 4, 23, 3, 1, 1)  # drn.py drn_d_105
CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)  # drn.py DRN.__init__ default


class Bottleneck(nn.Module):
    """``drn.py`` ``Bottleneck``: 1×1, 3×3 (dilated), 1×1 (×4 channels), shortcut, ReLU."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes,
            planes,
            kernel_size=3,
            stride=stride,
            padding=dilation,
            bias=False,
            dilation=dilation,
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def _conv_layers(
    inplanes: int, channels: int, convs: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``DRN._make_conv_layers``: ``convs`` × (3×3 conv, BN, ReLU), the first strided."""
    modules: list[nn.Module] = []
    for i in range(convs):
        modules += [
            nn.Conv2d(
                inplanes if i == 0 else channels,
                channels,
                kernel_size=3,
                stride=stride if i == 0 else 1,
                padding=dilation,
                bias=False,
                dilation=dilation,
            ),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*modules)


def _bottleneck_layer(
    inplanes: int, planes: int, blocks: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``DRN._make_layer`` for Bottleneck with ``new_level=False`` where ``dilation > 1``
    (the only calls arch D makes): every block uses ``dilation``."""
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * 4),
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample, dilation)]
    layers += [Bottleneck(planes * 4, planes, dilation=dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def drn_d_105_base() -> nn.Sequential:
    """layer0–layer8 of ``drn_d_105`` (``DRNSeg.base``), with ``DRN.__init__``'s init."""
    c, n = CHANNELS, D105_LAYERS
    stem = nn.Sequential(
        nn.Conv2d(3, c[0], kernel_size=7, stride=1, padding=3, bias=False),
        nn.BatchNorm2d(c[0]),
        nn.ReLU(inplace=True),
    )
    base = nn.Sequential(
        stem,
        _conv_layers(c[0], c[0], n[0], stride=1),
        _conv_layers(c[0], c[1], n[1], stride=2),
        _bottleneck_layer(c[1], c[2], n[2], stride=2),
        _bottleneck_layer(c[2] * 4, c[3], n[3], stride=2),
        _bottleneck_layer(c[3] * 4, c[4], n[4], dilation=2),
        _bottleneck_layer(c[4] * 4, c[5], n[5], dilation=4),
        _conv_layers(c[5] * 4, c[6], n[6], dilation=2),
        _conv_layers(c[6], c[7], n[7], dilation=1),
    )
    for m in base.modules():  # DRN.__init__: He-normal over fan-out, BN weight 1, bias 0
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    return base


def bilinear_up_weights(up: nn.ConvTranspose2d) -> None:
    """``segment.py`` ``fill_up_weights``: the same bilinear kernel in every channel."""
    w = up.weight.data
    f = math.ceil(w.size(2) / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    for i in range(w.size(2)):
        for j in range(w.size(3)):
            w[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    w[1:] = w[:1]


class DRNSeg(nn.Module):
    """``segment.py`` ``DRNSeg('drn_d_105', classes)``: per-pixel log-probabilities at the
    input resolution (H, W multiples of 8) and the stride-8 scores."""

    def __init__(self, classes: int = CITYSCAPES_CLASSES):
        super().__init__()
        self.base = drn_d_105_base()
        self.seg = nn.Conv2d(CHANNELS[-1], classes, kernel_size=1, bias=True)
        fan_out = self.seg.kernel_size[0] * self.seg.kernel_size[1] * self.seg.out_channels
        self.seg.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        self.seg.bias.data.zero_()
        self.up = nn.ConvTranspose2d(
            classes, classes, 16, stride=8, padding=4, output_padding=0, groups=classes, bias=False
        )
        bilinear_up_weights(self.up)
        self.up.weight.requires_grad = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.seg(self.base(x))
        return torch.log_softmax(self.up(scores), dim=1), scores

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Class ids (N×H×W) of RGB images in [0, 1] (N×3×H×W), normalised as ``segment.py``
        does with ``info.json`` and argmax'ed as ``segment.py`` ``test`` does."""
        mean = images.new_tensor(CITYSCAPES_MEAN).view(1, 3, 1, 1)
        std = images.new_tensor(CITYSCAPES_STD).view(1, 3, 1, 1)
        return self((images - mean) / std)[0].argmax(1)


def load_drn_seg(path: str | Path, classes: int = CITYSCAPES_CLASSES) -> DRNSeg:
    """The DRN-D-105 segmentation checkpoint at ``path``, in eval mode.

    Accepts the released bare ``state_dict`` (``base.*``, ``seg.*``, ``up.weight``), with or
    without ``module.`` and ``{"state_dict": ...}`` wrapping; BatchNorm ``num_batches_tracked``
    may be absent (the 2017 release predates it). Raises
    :class:`mixgan.metrics.weights.WeightsError` naming the file on any other key problem.
    """
    model = DRNSeg(classes)
    load_official_state(model, path, "DRN-D-105 segmentation", optional=("num_batches_tracked",))
    return model.eval()
