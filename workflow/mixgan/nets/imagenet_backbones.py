"""AlexNet and VGG-16/19 in torchvision's module layout, built without importing torchvision.

The modules have the ``state_dict`` keys of ``torchvision.models.alexnet``, ``vgg16`` and
``vgg19`` (``features.N.*``, ``classifier.N.*``), so the provisioned torchvision weights load
strictly, and compute the same function (tests/test_imagenet_backbones.py compares outputs with
torchvision's for the same tensors). Importing torchvision registers its operators and pulls in
``torch._dynamo``, about 3 s of a metric job that otherwise takes 5; the metrics (LPIPS,
precision/recall's VGG-16 fc2 features) and SPADE's VGG-19 loss build these instead.

Layer lists: torchvision ``models/alexnet.py`` (``AlexNet.features``/``classifier``) and
``models/vgg.py`` (``cfgs["D"]``, ``cfgs["E"]``, ``make_layers`` without batch norm,
``VGG.classifier``). Untrained networks (the labelled stand-ins) use torchvision's
initialisation: PyTorch's defaults for AlexNet, ``VGG._initialize_weights`` for VGG.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

VGG16_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
VGG19_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
CLASSES = 1000


def alexnet_features() -> nn.Sequential:
    """torchvision's ``AlexNet.features``: 13 modules, ReLUs at 1, 4, 7, 9, 11."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def vgg_features(layers: Sequence[int | str]) -> nn.Sequential:
    """torchvision's ``make_layers(cfg, batch_norm=False)``: 3×3 convolutions (padding 1)
    each followed by an in-place ReLU, ``"M"`` a 2×2 max pooling; initialised as
    ``VGG._initialize_weights`` does."""
    modules: list[nn.Module] = []
    channels = 3
    for layer in layers:
        if layer == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(channels, int(layer), kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        modules += [conv, nn.ReLU(inplace=True)]
        channels = int(layer)
    return nn.Sequential(*modules)


class ImageNetClassifier(nn.Module):
    """``features``, an adaptive average pool to ``pooled``² and ``classifier``: the module
    tree of torchvision's AlexNet and VGG."""

    def __init__(self, features: nn.Sequential, pooled: int, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((pooled, pooled))
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def alexnet() -> ImageNetClassifier:
    """torchvision's ``alexnet(weights=None)`` layout (61,100,840 parameters)."""
    classifier = nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, CLASSES),
    )
    return ImageNetClassifier(alexnet_features(), 6, classifier)


def _vgg(layers: Sequence[int | str]) -> ImageNetClassifier:
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, CLASSES),
    )
    for module in classifier:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)
    return ImageNetClassifier(vgg_features(layers), 7, classifier)


def vgg16() -> ImageNetClassifier:
    """torchvision's ``vgg16(weights=None)`` layout (138,357,544 parameters)."""
    return _vgg(VGG16_LAYERS)


def vgg19() -> ImageNetClassifier:
    """torchvision's ``vgg19(weights=None)`` layout (143,667,240 parameters)."""
    return _vgg(VGG19_LAYERS)


def from_state_dict(name: str, state: dict[str, Tensor]) -> ImageNetClassifier:
    """``name`` ('alexnet', 'vgg16', 'vgg19') holding the tensors of a torchvision state_dict,
    every key required: built on the meta device, so nothing is initialised only to be
    overwritten (a RuntimeError names missing, unexpected or mis-shaped keys)."""
    with torch.device("meta"):
        network = {"alexnet": alexnet, "vgg16": vgg16, "vgg19": vgg19}[name]()
    network.load_state_dict(state, assign=True)
    return network
