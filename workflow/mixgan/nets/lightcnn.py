"""LightCNN-29 v2 (Wu, He, Sun, Tan, TIFS 2018): the face encoder and recognizer of ReMix §4.2.

A re-implementation of ``network_29layers_v2`` in AlfredXiangWu/LightCNN ``light_cnn.py``
(commit 7b38a6f), with the same module and parameter names, so the official checkpoint
(``LightCNN_29Layers_V2_checkpoint.pth.tar``: ``{"state_dict": ...}`` saved through
``torch.nn.DataParallel``, every key prefixed ``module.``) loads with :func:`load_lightcnn`.

Settings and where they come from (all ``light_cnn.py`` unless noted):

* ``mfm``: a convolution (or, ``type=0``, a linear layer) to twice the channels, split in two
  halves, element-wise maximum (Max-Feature-Map);
* ``group``: a 1×1 ``mfm`` keeping the channels, then a k×k ``mfm``;
* ``resblock``: two 3×3 ``mfm`` and an identity shortcut, no activation after the sum;
* ``network_29layers_v2``: ``mfm(1, 48, 5, 1, 2)``, blocks ``[1, 2, 3, 4]``
  (``LightCNN_29Layers_v2``), groups 48→96→192→128→128, each pooling
  ``max_pool2d(2) + avg_pool2d(2)`` (4 poolings: 128² → 8²), ``fc = Linear(8*8*128, 256)``
  (the 256-d feature, returned *before* dropout), dropout (p 0.5, training only),
  ``fc2 = Linear(256, num_classes, bias=False)``; ``forward`` returns ``(logits, feature)``;
* ``num_classes`` 80013 for the released v2 model (README: "the training datasets for
  LightCNN-29v2 are CASIA-WebFace and MS-Celeb-1M, therefore, the num_classes is 80013");
* input: one grey channel, 128×128, scaled to [0, 1] (``extract_features.py``: ``cv2.imread``
  grayscale, ``transforms.ToTensor()``, no mean subtraction).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mixgan.nets.official_checkpoint import load_official_state

INPUT_SIZE = 128  # extract_features.py: np.reshape(img, (128, 128, 1))
FEATURE_DIM = 256  # network_29layers_v2.fc = nn.Linear(8*8*128, 256)
V2_CLASSES = 80013  # README.md, "LightCNN-29v2 ... num_classes is 80013"
V2_BLOCKS = (1, 2, 3, 4)  # LightCNN_29Layers_v2: network_29layers_v2(resblock, [1, 2, 3, 4])


class MFM(nn.Module):
    """Max-Feature-Map over a convolution or linear layer (``light_cnn.py`` ``mfm``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        conv: bool = True,
    ):
        super().__init__()
        self.out_channels = out_channels
        self.filter: nn.Module = (
            nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride, padding)
            if conv
            else nn.Linear(in_channels, 2 * out_channels)
        )

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.split(self.filter(x), self.out_channels, 1)
        return torch.max(a, b)


class Group(nn.Module):
    """A 1×1 MFM then a k×k MFM (``light_cnn.py`` ``group``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int
    ):
        super().__init__()
        self.conv_a = MFM(in_channels, in_channels, 1, 1, 0)
        self.conv = MFM(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.conv_a(x))


class ResBlock(nn.Module):
    """Two 3×3 MFM and an identity shortcut (``light_cnn.py`` ``resblock``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = MFM(channels, channels)
        self.conv2 = MFM(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)) + x


def _pool(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)`` (``network_29layers_v2.forward``)."""
    return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)


class LightCNN29v2(nn.Module):
    """``network_29layers_v2``: 128² grey faces → (class logits, 256-d identity feature)."""

    def __init__(self, num_classes: int = V2_CLASSES):
        super().__init__()
        self.conv1 = MFM(1, 48, 5, 1, 2)
        self.block1 = nn.Sequential(*[ResBlock(48) for _ in range(V2_BLOCKS[0])])
        self.group1 = Group(48, 96, 3, 1, 1)
        self.block2 = nn.Sequential(*[ResBlock(96) for _ in range(V2_BLOCKS[1])])
        self.group2 = Group(96, 192, 3, 1, 1)
        self.block3 = nn.Sequential(*[ResBlock(192) for _ in range(V2_BLOCKS[2])])
        self.group3 = Group(192, 128, 3, 1, 1)
        self.block4 = nn.Sequential(*[ResBlock(128) for _ in range(V2_BLOCKS[3])])
        self.group4 = Group(128, 128, 3, 1, 1)
        self.fc = nn.Linear(8 * 8 * 128, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, num_classes, bias=False)

    def features(self, x: Tensor) -> Tensor:
        """The 256-d ``fc`` output (what ``extract_features.py`` saves), N×1×128×128 in [0, 1]."""
        x = _pool(self.conv1(x))
        x = _pool(self.group1(self.block1(x)))
        x = _pool(self.group2(self.block2(x)))
        x = self.group4(self.block4(self.group3(self.block3(x))))
        return self.fc(_pool(x).flatten(1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feature = self.features(x)
        return self.fc2(F.dropout(feature, training=self.training)), feature


def load_lightcnn(path: str | Path, num_classes: int = V2_CLASSES) -> LightCNN29v2:
    """The official LightCNN-29 v2 checkpoint at ``path``, in eval mode.

    Accepts the release layout (``{"state_dict": {"module.conv1.filter.weight": ...}}``) and
    bare state dicts with or without the ``module.`` prefix; raises
    :class:`mixgan.metrics.weights.WeightsError` naming the file on any missing, unexpected or
    mis-shaped key.
    """
    model = LightCNN29v2(num_classes)
    load_official_state(model, path, "LightCNN-29 v2")
    return model.eval()
