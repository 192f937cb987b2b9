"""The images a person labels: the defective test images of an MVTec/KolektorSDD2 layout (with
KolektorSDD2's defective training images), then the images whose label is unknown (KolektorSDD2
images without a `_GT` file: a person decides, defect or `no_defect`), or every image of a plain
folder. An image is addressed by its position in this fixed, sorted list,
never by a path from a request, so a request can only reach the dataset's own images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adinspect.data.datasets import DatasetError, list_images, open_dataset


@dataclass(frozen=True)
class QueueItem:
    """One image: its id (position), file, path relative to the data root, and folder's defect type."""

    id: int
    path: Path
    rel: str
    folder_type: str | None


def build_queue(data_dir: Path) -> list[QueueItem]:
    """The labelling queue of `data_dir` (natural order of the dataset readers)."""
    root = Path(data_dir).resolve()
    dataset = open_dataset(root, require_masks=False)
    entries: list[tuple[Path, str | None]]
    if dataset.layout == "folder":
        entries = [(p, None) for p in list_images(root, recursive=True)]
    else:
        entries = [(s.path, s.defect_type) for s in dataset.test + dataset.train_defective if s.label == 1]
        entries += [(p, None) for p in dataset.unlabelled]
    if not entries:
        raise DatasetError(f"{root}: no defective images to label (expected test/<defect>/ images)")
    return [
        QueueItem(i, Path(p).resolve(), Path(p).resolve().relative_to(root).as_posix(), t)
        for i, (p, t) in enumerate(entries)
    ]
