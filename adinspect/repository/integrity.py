"""What `repo build` vouches for: the repository manifest (SHA-256 of every generated file).

`repo build` writes `adinspect_repository.json` at the repository root: the models it generated,
the products and their packages, the settings, and the SHA-256 of every file under those model
directories (config.pbtxt, ONNX files, model.py and the adinspect library copy each Python model
imports). `serve` calls `verify_repository` before starting Triton and refuses a repository whose
files differ, are missing or were added, naming the first such file. The whole root is walked, not
only the listed models: Triton would load any folder, so a model folder the manifest does not list is
refused, and so is any symbolic link (`repo build` writes none; Triton would follow it out of what the
manifest vouches for) and anything that is not a regular file or folder. This guards against bit rot,
partial copies and hand edits; it is not a signature (whoever can write the files can rewrite the
manifest too).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adinspect.errors import InputError
from adinspect.package import sha256_of

MARKER = "adinspect_repository.json"
MODEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,80}$")


class RepositoryIntegrityError(InputError):
    """A generated repository whose files no longer match its manifest, or whose manifest is bad."""


class SharedModels(BaseModel):
    """The products one backbone model serves (gpu: one preprocess, backbone and postprocess)."""

    model_config = ConfigDict(extra="forbid")

    suffix: str = Field(default="", description='"" or "<H>x<W>": appended to the shared model names')
    backbone_sha256: str
    preprocess: dict[str, Any]
    products: list[str]


class RepositoryManifest(BaseModel):
    """The marker `repo build` leaves in the repository root."""

    model_config = ConfigDict(extra="forbid")

    adinspect_version: str
    flavor: str
    models: list[str] = Field(description="model directories this build wrote (and may replace)")
    products: dict[str, str] = Field(description="product → the package directory it was built from")
    settings: dict[str, Any]
    backbone_sha256: str = Field(default="", description="backbone.onnx of the first group's products")
    preprocess: dict[str, Any] = Field(default_factory=dict, description="the first group's input spec")
    shared: list[SharedModels] = Field(
        default_factory=list, description="per backbone model, its products (empty before input shapes)"
    )
    files: dict[str, str] = Field(default_factory=dict, description="path under the root → SHA-256")

    @field_validator("models")
    @classmethod
    def _model_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not MODEL_NAME_RE.match(name):
                raise ValueError(f"model name {name!r} must match {MODEL_NAME_RE.pattern}")
        return names

    @field_validator("products")
    @classmethod
    def _product_names(cls, products: dict[str, str]) -> dict[str, str]:
        for name in products:
            if not MODEL_NAME_RE.match(name):
                raise ValueError(f"product name {name!r} must match {MODEL_NAME_RE.pattern}")
        return products


def shared_of(manifest: RepositoryManifest, product: str) -> SharedModels:
    """The backbone model a served product runs on (a manifest from before input shapes: the one)."""
    for group in manifest.shared:
        if product in group.products:
            return group
    return SharedModels(
        backbone_sha256=manifest.backbone_sha256, preprocess=manifest.preprocess, products=[product]
    )


def model_files(root: Path, models: list[str]) -> list[Path]:
    """Every file under the named model directories (sorted, relative to `root`)."""
    return sorted(
        path.relative_to(root)
        for model in models
        for path in (root / model).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


def hash_models(root: Path, models: list[str]) -> dict[str, str]:
    return {path.as_posix(): sha256_of(root / path) for path in model_files(root, models)}


def read_manifest(root: Path) -> RepositoryManifest | None:
    """The repository's manifest, None when there is none (not built by `repo build`)."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        return RepositoryManifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "top level"
        raise RepositoryIntegrityError(
            f"{path} is not a valid repository manifest ({where}: {first['msg']}); "
            "rebuild the repository with `adinspect repo build`"
        ) from exc


def verify_repository(root: Path) -> RepositoryManifest:
    """Check every generated file against the manifest; raise naming the first that differs.

    Raises:
        RepositoryIntegrityError: no manifest; a file changed, missing or added; an unlisted model
            folder, a symbolic link or a special file anywhere under the root.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        raise RepositoryIntegrityError(
            f"{root} has no {MARKER}: it was not written by `adinspect repo build`, so nothing vouches "
            "for its files; build it with `adinspect repo build` (or serve it with --unverified)"
        )
    if not manifest.files:
        raise RepositoryIntegrityError(
            f"{root / MARKER} lists no file checksums (built by an older adinspect); rebuild the repository"
        )
    check_tree(root, manifest)
    for name, digest in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise RepositoryIntegrityError(f"{path} is missing from the repository; rebuild it")
        if sha256_of(path) != digest:
            raise RepositoryIntegrityError(
                f"{path} differs from what `repo build` wrote (SHA-256 mismatch); rebuild the repository"
            )
    for path in model_files(root, manifest.models):
        if path.as_posix() not in manifest.files:
            raise RepositoryIntegrityError(
                f"{root / path} was added after `repo build` (not in {MARKER}); remove it or rebuild"
            )
    return manifest


def check_tree(root: Path, manifest: RepositoryManifest) -> None:
    """Refuse what Triton would load or follow that the manifest does not vouch for: an unlisted model
    folder, a symbolic link anywhere, a device, pipe or socket.

    Raises:
        RepositoryIntegrityError: naming the first such path.
    """
    listed = set(manifest.models)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise RepositoryIntegrityError(
                    f"{path} is a symbolic link (to {os.readlink(path)}): a repository holds its own files "
                    "(`repo build` writes no link) and Triton would serve what the link points at; replace "
                    "it with the file or rebuild the repository"
                )
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise RepositoryIntegrityError(
                    f"{path} is not a regular file or folder; remove it or rebuild"
                )
            if stat.S_ISDIR(mode) and Path(dirpath) == root and name not in listed:
                raise RepositoryIntegrityError(
                    f"{path} is a model folder that {root / MARKER} does not list: Triton would load it and "
                    "run its code; remove it (or rebuild the repository with `adinspect repo build`)"
                )


def main(argv: list[str] | None = None) -> int:
    """`python -m adinspect.repository.integrity REPO`: the check `serve` runs, for servers started
    another way (the Kubernetes pod runs it in an init container before tritonserver starts)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m adinspect.repository.integrity MODEL_REPOSITORY", file=sys.stderr)
        return 2
    try:
        manifest = verify_repository(Path(args[0]))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args[0]}: {len(manifest.files)} files match {MARKER}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
