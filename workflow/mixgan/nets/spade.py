"""SPADE (Park, Liu, Wang, Zhu, CVPR 2019): the label-map → photo baseline of ReMix Table 3.

A re-implementation of NVlabs/SPADE (commit fecacc9) with the official module and parameter
names, so official ``latest_net_G.pth`` / ``latest_net_D.pth`` files load with
``load_state_dict``. Settings and where they come from:

* Cityscapes options (``data/cityscapes_dataset.py``): ``label_nc=35``, ``crop_size=512``,
  ``aspect_ratio=2.0`` (512×256 images), ``batchSize=16``, and
  ``num_upsampling_layers='more'``: the dataset's option setter runs after the generator's
  (``options/base_options.py`` ``gather_options``) and overrides the generator default
  ``'normal'`` for Cityscapes. Both give a 512×256 output and the same parameters: 'more'
  starts from an 8×4 map and upsamples once more, between ``G_middle_0`` and ``G_middle_1``;
* inputs (``models/pix2pix_model.py`` ``preprocess_input``, ``get_edges``): one-hot label map
  (no "don't care" channel: ``contain_dontcare_label`` is off) plus the instance edge map
  (``no_instance`` off): ``semantic_nc = 36``;
* generator (``models/networks/generator.py`` ``SPADEGenerator``): ``ngf=64``, no VAE
  (``use_vae`` off): ``fc`` = 3×3 conv of the downsampled (nearest) label map to 16·ngf;
  ``head_0``, ``G_middle_0``, ``G_middle_1`` at 16·ngf; ``up_0``–``up_3`` halve the channels;
  nearest ×2 upsampling; ``conv_img`` after leaky ReLU 0.2, tanh;
* ``norm_G='spectralspadesyncbatch3x3'`` (``SPADEGenerator.modify_commandline_options``):
  spectral norm on every block conv, SPADE over a parameter-free *synchronized batch norm*
  (here ``nn.BatchNorm2d(affine=False)``, identical on one device; convert with
  ``nn.SyncBatchNorm.convert_sync_batchnorm`` for several), 3×3 SPADE convs, 128 hidden
  channels (``models/networks/normalization.py`` ``SPADE``);
* ``SPADEResnetBlock`` (``models/networks/architecture.py``): learned 1×1 shortcut (no bias)
  with its own SPADE when ``fin != fout``, ``fmiddle = min(fin, fout)``, leaky ReLU 0.2;
* discriminator (``models/networks/discriminator.py``): ``MultiscaleDiscriminator`` with
  ``num_D=2`` (the second sees a 3×3/stride-2 average-pooled input, ``count_include_pad=False``)
  of ``NLayerDiscriminator`` with ``n_layers_D=4``, ``ndf=64``, 4×4 kernels, padding 2,
  ``norm_D='spectralinstance'`` (``options/base_options.py``): spectral norm and a
  non-affine instance norm on the middle convs (bias removed), none on the first and last;
  input = label map ⊕ image (35 + 3 + 1 channels); returns every layer's output (the feature
  matching loss is on: ``no_ganFeat_loss`` off);
* initialisation (``models/networks/base_network.py`` ``init_weights``, ``init_type='xavier'``,
  ``init_variance=0.02``): Xavier-normal gain 0.02 for every conv/linear weight, zero biases.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

CITYSCAPES_LABEL_NC = 35  # data/cityscapes_dataset.py: parser.set_defaults(label_nc=35)
CITYSCAPES_CROP = 512  # data/cityscapes_dataset.py: crop_size=512
CITYSCAPES_ASPECT = 2.0  # data/cityscapes_dataset.py: aspect_ratio=2.0
SPADE_HIDDEN = 128  # normalization.py SPADE: "nhidden = 128 ... Yes, hardcoded."
UPSAMPLINGS = {"normal": 5, "more": 6}  # generator.py compute_latent_vector_size


def instance_edges(instance: Tensor) -> Tensor:
    """``pix2pix_model.py`` ``get_edges``: 1 where a pixel's instance id differs from a 4-
    neighbour's, on N×1×H×W instance maps."""
    edge = torch.zeros_like(instance, dtype=torch.bool)
    dx = instance[..., :, 1:] != instance[..., :, :-1]
    dy = instance[..., 1:, :] != instance[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()


def semantic_input(
    label: Tensor, instance: Tensor | None, label_nc: int = CITYSCAPES_LABEL_NC
) -> Tensor:
    """``pix2pix_model.py`` ``preprocess_input``: one-hot N×label_nc×H×W of the N×1×H×W
    label ids, with the instance edge map appended when ``instance`` is given."""
    n, _, h, w = label.shape
    one_hot = torch.zeros(n, label_nc, h, w, device=label.device)
    one_hot.scatter_(1, label.long(), 1.0)
    if instance is None:
        return one_hot
    return torch.cat([one_hot, instance_edges(instance)], dim=1)


class SPADE(nn.Module):
    """``normalization.py`` ``SPADE('spadesyncbatch3x3', norm_nc, label_nc)``."""

    def __init__(self, norm_nc: int, label_nc: int, kernel_size: int = 3):
        super().__init__()
        self.param_free_norm = nn.BatchNorm2d(norm_nc, affine=False)
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_nc, SPADE_HIDDEN, kernel_size, padding=pad), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_nc, kernel_size, padding=pad)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """``architecture.py`` ``SPADEResnetBlock`` with ``norm_G='spectralspadesyncbatch3x3'``."""

    def __init__(self, fin: int, fout: int, semantic_nc: int):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmiddle, kernel_size=3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmiddle, fout, kernel_size=3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, kernel_size=1, bias=False))
        self.norm_0 = SPADE(fin, semantic_nc)
        self.norm_1 = SPADE(fmiddle, semantic_nc)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, semantic_nc)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


def init_xavier(module: nn.Module, gain: float = 0.02) -> None:
    """``base_network.py`` ``init_weights('xavier', 0.02)``: conv/linear weights Xavier-normal
    (spectral-normed ones through ``weight_orig``, which the official call reaches through the
    shared storage of ``weight.data``), biases zero; BatchNorm weights N(1, gain)."""
    for m in module.modules():
        name = type(m).__name__
        if "BatchNorm2d" in name and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight.data, 1.0, gain)
            nn.init.constant_(m.bias.data, 0.0)
        elif isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(getattr(m, "weight_orig", m.weight).data, gain=gain)
            if m.bias is not None:
                nn.init.constant_(m.bias.data, 0.0)


class SPADEGenerator(nn.Module):
    """``generator.py`` ``SPADEGenerator`` without VAE: semantic map → image in [-1, 1]."""

    def __init__(
        self,
        semantic_nc: int = CITYSCAPES_LABEL_NC + 1,
        ngf: int = 64,
        crop_size: int = CITYSCAPES_CROP,
        aspect_ratio: float = CITYSCAPES_ASPECT,
        num_upsampling_layers: Literal["normal", "more"] = "more",
    ):
        super().__init__()
        self.more = num_upsampling_layers == "more"
        self.sw = crop_size // 2 ** UPSAMPLINGS[num_upsampling_layers]
        self.sh = round(self.sw / aspect_ratio)
        nf = ngf
        self.fc = nn.Conv2d(semantic_nc, 16 * nf, 3, padding=1)
        self.head_0 = SPADEResnetBlock(16 * nf, 16 * nf, semantic_nc)
        self.G_middle_0 = SPADEResnetBlock(16 * nf, 16 * nf, semantic_nc)
        self.G_middle_1 = SPADEResnetBlock(16 * nf, 16 * nf, semantic_nc)
        self.up_0 = SPADEResnetBlock(16 * nf, 8 * nf, semantic_nc)
        self.up_1 = SPADEResnetBlock(8 * nf, 4 * nf, semantic_nc)
        self.up_2 = SPADEResnetBlock(4 * nf, 2 * nf, semantic_nc)
        self.up_3 = SPADEResnetBlock(2 * nf, 1 * nf, semantic_nc)
        self.conv_img = nn.Conv2d(nf, 3, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        init_xavier(self)

    def forward(self, seg: Tensor) -> Tensor:
        x = self.fc(F.interpolate(seg, size=(self.sh, self.sw)))
        x = self.up(self.head_0(x, seg))
        x = self.G_middle_0(x, seg)
        if self.more:
            x = self.up(x)
        x = self.up(self.G_middle_1(x, seg))
        x = self.up(self.up_0(x, seg))
        x = self.up(self.up_1(x, seg))
        x = self.up(self.up_2(x, seg))
        x = self.up_3(x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class NLayerDiscriminator(nn.Module):
    """``discriminator.py`` ``NLayerDiscriminator`` with ``norm_D='spectralinstance'``;
    returns the outputs of ``model0`` … ``model{n_layers}`` (the last is the patch score)."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        kw, padw = 4, 2  # padw = int(np.ceil((kw - 1.0) / 2))
        nf = ndf
        groups: list[list[nn.Module]] = [
            [nn.Conv2d(input_nc, nf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, False)]
        ]
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = spectral_norm(
                nn.Conv2d(nf_prev, nf, kw, stride=stride, padding=padw, bias=False)
            )
            groups.append(
                [nn.Sequential(conv, nn.InstanceNorm2d(nf, affine=False)), nn.LeakyReLU(0.2, False)]
            )
        groups.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        for n, group in enumerate(groups):
            self.add_module(f"model{n}", nn.Sequential(*group))

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for block in self.children():
            x = block(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """``discriminator.py`` ``MultiscaleDiscriminator``: ``num_D`` PatchGANs on ever coarser
    (avg-pooled) copies of the label ⊕ image input; one feature list per scale."""

    def __init__(
        self,
        input_nc: int = CITYSCAPES_LABEL_NC + 3 + 1,
        ndf: int = 64,
        n_layers: int = 4,
        num_d: int = 2,
    ):
        super().__init__()
        for i in range(num_d):
            self.add_module(f"discriminator_{i}", NLayerDiscriminator(input_nc, ndf, n_layers))
        init_xavier(self)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        result = []
        for d in self.children():
            result.append(d(x))
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
        return result
