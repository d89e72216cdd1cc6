"""Where a dataset's raw images come from: a folder (recursive), a zip, optional labels.

Labels follow either the StyleGAN2-ADA convention (``dataset.json`` with
``{"labels": [[relative/path.png, int], ...]}``) or the first sub-folder of each image
(``cat/…``, ``dog/…``: the class names are the sorted folder names).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mixgan.data.imagezip import IMAGE_SUFFIXES
from mixgan.errors import DataError
from mixgan.io import atomic_path


@dataclass(frozen=True)
class SourceImage:
    """One raw image: where it is, how to read it, and its label name (if any)."""

    name: str  # path relative to the dataset root, POSIX separators
    container: Path
    label: str | None = None

    def read(self, archive: zipfile.ZipFile | None = None) -> bytes:
        """The file's bytes; pass the open ``archive`` of a zip container to avoid reopening it."""
        if self.container.is_dir():
            return (self.container / self.name).read_bytes()
        if archive is not None:
            return archive.read(self.name)
        with zipfile.ZipFile(self.container) as opened:
            return opened.read(self.name)

    @property
    def location(self) -> str:
        """A path a user can find the file at, for error messages."""
        if self.container.is_dir():
            return str(self.container / self.name)
        return f"{self.container}:{self.name}"


def list_source_images(
    path: str | Path, fmt: str = "auto", labels: str = "none", subdir: str | None = None
) -> list[SourceImage]:
    """Every image of a folder or zip (under ``subdir`` if given), sorted, with its label name.

    Label names (sub-folders, dataset.json entries) are relative to ``subdir``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset path does not exist")
    fmt = ("zip" if path.suffix.lower() == ".zip" else "folder") if fmt == "auto" else fmt
    if fmt == "zip":
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not a readable zip file")
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
    elif fmt == "folder":
        if not path.is_dir():
            raise DataError(f"{path}: expected a folder of images")
        names = sorted(
            p.relative_to(path).as_posix()
            for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    else:
        raise DataError(f"{path}: unsupported dataset format '{fmt}'")
    prefix = f"{subdir.strip('/')}/" if subdir else ""
    names = [n for n in names if n.startswith(prefix)]
    if not names:
        where = f"{path} (under {subdir})" if subdir else str(path)
        raise DataError(f"{where}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    label_json = _read_member(path, f"{prefix}dataset.json")
    relative = [n.removeprefix(prefix) for n in names]
    label_of = _labels(path, relative, labels, label_json)
    return [SourceImage(n, path, label_of.get(r)) for n, r in zip(names, relative, strict=True)]


def class_folder_problems(
    path: str | Path, classes: list[str], subdir: str | None = None, fmt: str = "auto"
) -> list[str]:
    """The expected class sub-folders (``classes``) of a folder or zip dataset that are
    missing or hold no image, and the sub-folders that are not expected, each named."""
    path = Path(path)
    fmt = ("zip" if path.suffix.lower() == ".zip" else "folder") if fmt == "auto" else fmt
    prefix = f"{subdir.strip('/')}/" if subdir else ""
    if fmt == "zip":
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()  # folders end in "/"
    else:
        members = [
            p.relative_to(path).as_posix() + ("/" if p.is_dir() else "") for p in path.rglob("*")
        ]
    found: dict[str, int] = {}
    for member in members:
        parts = PurePosixPath(member.removeprefix(prefix)).parts
        if member.startswith(prefix) and (len(parts) >= 2 or member.endswith("/")) and parts:
            images = member.lower().endswith(IMAGE_SUFFIXES)
            found[parts[0]] = found.get(parts[0], 0) + images
    where = f"{path}:" if fmt == "zip" else f"{path}/"
    problems = [
        f"{where}{prefix}{name}: class folder missing" if name not in found
        else f"{where}{prefix}{name}: class folder holds no image"
        for name in classes
        if not found.get(name)
    ]  # fmt: skip
    extra = sorted(set(found) - set(classes))
    if extra:
        problems.append(f"{where}{prefix}: unexpected class folder(s) {', '.join(extra)}")
    return problems


def _read_member(path: Path, name: str) -> bytes | None:
    if path.is_dir():
        member = path / name
        return member.read_bytes() if member.exists() else None
    with zipfile.ZipFile(path) as archive:
        return archive.read(name) if name in archive.namelist() else None


def _labels(path: Path, names: list[str], mode: str, label_json: bytes | None) -> dict[str, str]:
    if mode == "none":
        return {}
    if mode == "subfolder":
        flat = [n for n in names if len(PurePosixPath(n).parts) < 2]
        if flat:
            raise DataError(f"{path}: labels 'subfolder' but {flat[0]} is not in a sub-folder")
        return {n: PurePosixPath(n).parts[0] for n in names}
    if mode == "dataset_json":
        if label_json is None:
            raise DataError(f"{path}: labels 'dataset_json' but there is no dataset.json")
        try:
            entries = json.loads(label_json)["labels"]
            table = {str(name): str(label) for name, label in entries}
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"{path}/dataset.json: not in the StyleGAN2-ADA format ({error})"
            ) from error
        missing = [n for n in names if n not in table]
        if missing:
            raise DataError(
                f"{path}/dataset.json: no label for {missing[0]} ({len(missing)} unlabelled)"
            )
        return table
    raise DataError(f"{path}: unknown label mode '{mode}'")


def download(url: str, destination: str | Path, timeout: float = 30.0) -> Path:
    """Fetch ``url`` to ``destination`` atomically; fail fast and clearly without network."""
    destination = Path(destination)
    try:
        with (
            urllib.request.urlopen(url, timeout=timeout) as response,
            atomic_path(destination) as tmp,
            open(tmp, "wb") as handle,
        ):
            while chunk := response.read(1 << 20):
                handle.write(chunk)
    except (TimeoutError, urllib.error.URLError, OSError) as error:
        raise DataError(
            f"could not download {url} ({error}). This machine may have no network: download "
            f"it elsewhere and set the dataset's `path` in the config to the file or folder."
        ) from error
    return destination
