"""Dataset readers: MVTec AD, KolektorSDD2 and plain image folders.

A reader only lists files: it returns paths and labels, never pixels (read them with
:mod:`adinspect.imageio`). Listings are deterministic (natural sort on the path relative to the
root, so ``img2`` comes before ``img10``), and hidden files and folders (``.name``) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from adinspect.errors import InputError
from adinspect.imageio import IMAGE_EXTENSIONS, read_mask

__all__ = [
    "Dataset",
    "DatasetError",
    "Layout",
    "Sample",
    "detect_layout",
    "list_images",
    "load_folder",
    "load_ksdd2",
    "load_mvtec",
    "open_dataset",
]

Layout = Literal["mvtec", "ksdd2", "folder"]

GOOD = "good"
KSDD2_DEFECT = "defect"
_LAYOUT_HELP = (
    "point --data at a folder of images, at one MVTec AD category (train/good/, test/<defect>/, "
    "ground_truth/<defect>/) or at a KolektorSDD2 folder (train/ and test/ with *_GT.png masks)"
)


class DatasetError(InputError):
    """A data folder is missing, empty or not in the layout it claims; the message says what to do."""


@dataclass(frozen=True)
class Sample:
    """One labelled test (or weakly supervised training) image.

    Attributes:
        path: the image file.
        label: 0 for good, 1 for defective.
        defect_type: ``"good"`` for good images, else the defect folder name (``"defect"`` in KSDD2).
        mask_path: ground-truth mask file (nonzero = defect); None for good images, or for
            defective images loaded with ``require_masks=False`` and no mask on disk.
    """

    path: Path
    label: int
    defect_type: str
    mask_path: Path | None = None

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(
                f"Sample {self.path}: label must be 0 (good) or 1 (defective), got {self.label!r}"
            )
        if (self.label == 0) != (self.defect_type == GOOD):
            raise ValueError(
                f"Sample {self.path}: label {self.label} does not match defect_type {self.defect_type!r} "
                f"(defect_type is {GOOD!r} exactly when label is 0)"
            )


@dataclass(frozen=True)
class Dataset:
    """The images of one product.

    Attributes:
        name: product name, taken from the root folder's name.
        root: the folder the dataset was read from.
        layout: which reader produced it.
        train: defect-free reference images.
        test: labelled test images (empty for plain folders).
        train_defective: defective training images for weak supervision (KSDD2 only).
        unlabelled: images whose label is unknown, kept out of every split (KSDD2 images without
            their ``_GT`` mask, loaded with ``require_masks=False``); listed so callers can say so.
    """

    name: str
    root: Path
    layout: Layout
    train: list[Path]
    test: list[Sample] = field(default_factory=list)
    train_defective: list[Sample] = field(default_factory=list)
    unlabelled: list[Path] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        """Sorted defect types present in the test split (``"good"`` excluded)."""
        return sorted({s.defect_type for s in self.test if s.label == 1})

    def summary(self) -> str:
        """One line for logs, e.g. ``bottle (mvtec): 209 train, 83 test (63 defective)``."""
        n_bad = sum(s.label for s in self.test)
        extra = f", {len(self.train_defective)} defective train" if self.train_defective else ""
        return (
            f"{self.name} ({self.layout}): {len(self.train)} train, "
            f"{len(self.test)} test ({n_bad} defective){extra}"
        )


# --------------------------------------------------------------------------- listing


def _natural_key(rel: str) -> list[tuple[int, int | str]]:
    """Sort key comparing digit runs as numbers: ``a2.png`` < ``a10.png``."""
    return [(0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", rel) if t]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (optionally below it), hidden entries skipped, naturally sorted.

    Returns an empty list when the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if not recursive:
        found = [p for p in folder.iterdir() if p.is_file() and _is_image(p)]
    else:
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [Path(dirpath) / f for f in filenames if _is_image(Path(f))]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(folder).as_posix()))


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    subs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(subs, key=lambda p: _natural_key(p.name))


def _require_dir(root: str | os.PathLike[str]) -> Path:
    path = Path(root)
    if not path.exists():
        raise DatasetError(f"data folder {path} does not exist; {_LAYOUT_HELP}")
    if not path.is_dir():
        raise DatasetError(f"data path {path} is a file, expected a folder; {_LAYOUT_HELP}")
    return path


def _no_images(folder: Path) -> DatasetError:
    exts = " ".join(IMAGE_EXTENSIONS)
    return DatasetError(f"no images found in {folder} (looked for {exts}); {_LAYOUT_HELP}")


# --------------------------------------------------------------------------- MVTec AD


def load_mvtec(root: str | os.PathLike[str], require_masks: bool = True) -> Dataset:
    """Read one MVTec AD category.

    Layout: ``root/train/good/*``, ``root/test/<defect>/*`` (``good`` for defect-free test images)
    and ``root/ground_truth/<defect>/<stem>_mask.png``. ``test/`` may be absent.

    Args:
        root: the category folder, e.g. ``.../mvtec_ad/bottle``.
        require_masks: when True (default) a defective test image without its mask is an error;
            set False for inference-only use, the sample then has ``mask_path=None``.

    Raises:
        DatasetError: not an MVTec category, no training images, stray test images, missing mask.
    """
    path = _require_dir(root)
    train_dir = path / "train" / GOOD
    if not train_dir.is_dir():
        raise DatasetError(f"{path} is not an MVTec AD category: {train_dir} is missing; {_LAYOUT_HELP}")
    train = list_images(train_dir)
    if not train:
        raise _no_images(train_dir)
    stray = list_images(path / "test")
    if stray:
        raise DatasetError(
            f"{stray[0]} lies directly in {path / 'test'}; MVTec test images belong in "
            f"test/good/ or test/<defect_type>/ (the folder name is the label): move them"
        )
    test: list[Sample] = []
    for defect_dir in _subfolders(path / "test"):
        defect = defect_dir.name
        for image in list_images(defect_dir):
            if defect == GOOD:
                test.append(Sample(image, 0, GOOD, None))
            else:
                mask = _mvtec_mask(path, defect, image, require_masks)
                test.append(Sample(image, 1, defect, mask))
    return Dataset(name=path.name, root=path, layout="mvtec", train=train, test=test)


def _mvtec_mask(root: Path, defect: str, image: Path, require: bool) -> Path | None:
    """The ground-truth mask of a defective MVTec test image (any image extension, PNG preferred)."""
    gt_dir = root / "ground_truth" / defect
    for ext in IMAGE_EXTENSIONS:
        candidate = gt_dir / f"{image.stem}_mask{ext}"
        if candidate.is_file():
            return candidate
    if not require:
        return None
    expected = gt_dir / f"{image.stem}_mask.png"
    raise DatasetError(
        f"defective test image {image} has no ground-truth mask: expected {expected}; add the mask, "
        f"move the image out of test/{defect}/, or load with require_masks=False for inference only"
    )


# --------------------------------------------------------------------------- KolektorSDD2


def load_ksdd2(root: str | os.PathLike[str], require_masks: bool = True) -> Dataset:
    """Read KolektorSDD2: ``root/{train,test}/<id>.png`` with masks ``<id>_GT.png``.

    A sample is defective when its mask has a nonzero pixel (every mask is read once). Defect-free
    training images form ``train``; defective ones go to ``train_defective`` for weak supervision.
    An image without its mask has no known label: an error by default, else it goes to
    ``unlabelled`` and into no split (it may be defective, so it cannot be a good image either).

    Raises:
        DatasetError: no training images, or (``require_masks``) an image without its ``_GT`` mask.
    """
    path = _require_dir(root)
    train_samples, unlabelled = _ksdd2_split(path / "train", require_masks)
    if not train_samples and not unlabelled:
        raise _no_images(path / "train")
    test, unlabelled_test = _ksdd2_split(path / "test", require_masks)
    return Dataset(
        name=path.name,
        root=path,
        layout="ksdd2",
        train=[s.path for s in train_samples if s.label == 0],
        test=test,
        train_defective=[s for s in train_samples if s.label == 1],
        unlabelled=unlabelled + unlabelled_test,
    )


def _is_ksdd2_mask(path: Path) -> bool:
    return path.stem.endswith("_GT")


def _ksdd2_split(folder: Path, require_masks: bool = True) -> tuple[list[Sample], list[Path]]:
    """Samples of one KSDD2 split folder (labels come from the masks' content), and the images
    without a mask (only when not `require_masks`)."""
    samples, unlabelled = [], []
    for image in list_images(folder):
        if _is_ksdd2_mask(image):
            continue
        mask = next(
            (m for ext in IMAGE_EXTENSIONS if (m := folder / f"{image.stem}_GT{ext}").is_file()), None
        )
        if mask is None and not require_masks:
            unlabelled.append(image)
            continue
        if mask is None:
            raise DatasetError(
                f"KolektorSDD2 image {image} has no mask: expected {folder / (image.stem + '_GT.png')} "
                "(an all-black mask marks a defect-free image); add it or remove the image"
            )
        if read_mask(mask).any():
            samples.append(Sample(image, 1, KSDD2_DEFECT, mask))
        else:
            samples.append(Sample(image, 0, GOOD, None))
    return samples, unlabelled


# --------------------------------------------------------------------------- plain folders


def load_folder(root: str | os.PathLike[str]) -> Dataset:
    """Every image below ``root`` (recursive) as a defect-free training image; no test split.

    Raises:
        DatasetError: the folder is missing or holds no images.
    """
    path = _require_dir(root)
    images = list_images(path, recursive=True)
    if not images:
        raise _no_images(path)
    return Dataset(name=path.name, root=path, layout="folder", train=images)


# --------------------------------------------------------------------------- detection


def detect_layout(root: str | os.PathLike[str]) -> Layout:
    """``"mvtec"`` if ``train/good/`` exists, ``"ksdd2"`` if train/ or test/ holds ``*_GT`` masks,
    else ``"folder"``.

    Raises:
        DatasetError: the folder is missing, or it is an MVTec AD root holding several categories.
    """
    path = _require_dir(root)
    if (path / "train" / GOOD).is_dir():
        return "mvtec"
    for split in ("train", "test"):
        if any(_is_ksdd2_mask(p) for p in list_images(path / split)):
            return "ksdd2"
    categories = [d.name for d in _subfolders(path) if (d / "train" / GOOD).is_dir()]
    if categories:
        shown = ", ".join(categories[:5]) + (", ..." if len(categories) > 5 else "")
        raise DatasetError(
            f"{path} holds several MVTec AD categories ({shown}); point --data at one of them, "
            f"e.g. {path / categories[0]}"
        )
    return "folder"


def open_dataset(root: str | os.PathLike[str], require_masks: bool = True) -> Dataset:
    """Detect the layout of ``root`` (see :func:`detect_layout`) and read it.

    Args:
        root: the data folder.
        require_masks: passed to :func:`load_mvtec` and :func:`load_ksdd2`.

    Raises:
        DatasetError: missing folder, no images, or an inconsistent layout.
    """
    layout = detect_layout(root)
    if layout == "mvtec":
        return load_mvtec(root, require_masks=require_masks)
    if layout == "ksdd2":
        return load_ksdd2(root, require_masks=require_masks)
    return load_folder(root)
