"""What produced an output: code version, package versions, machine. Recorded with every output."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from mixgan import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACKED_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "clean-fid",
    "lpips",
    "snakemake",
    "pandas",
)


@functools.cache
def code_version() -> str:
    """``git describe`` of the checkout (``-dirty`` when modified), else the package version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"mixgan-{__version__}"


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mixgan": __version__}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def provenance() -> dict[str, Any]:
    """The block every output record carries under ``provenance``."""
    return {
        "code_version": code_version(),
        "packages": package_versions(),
        "host": platform.node(),
    }
