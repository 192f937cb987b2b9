"""`adinspect repo verify`: the acceptance check after every deploy, on any hardware (DESIGN.md §7).

For every package (every product of a unified package), the good images scored to calibrate its
threshold (calibration.json: `holdout_files` relative to the fitted data folder, `holdout_sha256`;
at most `MAX_IMAGES` of them, spread over the list) are read once and mirrored left-right (every
good image is in a bank, where it would find itself and score about zero; mirrored it scores like
a new part), then
inspected twice from the same bytes: in-process (ONNX Runtime on this host's CPU, FP32: the
precision the threshold was calibrated in) and through the served `inspect_<product>` ensemble
(whatever it runs: cpu flavour, ONNX Runtime + TensorRT, FP16 plans). The deploy passes only if
every served verdict equals the in-process one, every served threshold equals the package's, and
no served score differs from the in-process score by more than `tolerance` x the threshold.
Imports numpy, onnxruntime, tritonclient and pydantic only (no torch).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from adinspect.errors import InputError
from adinspect.imageio import decode_image, encode_png
from adinspect.package import ModelPackage

DEFAULT_TOLERANCE = 0.01
MAX_IMAGES = 32  # calibration.json lists every good training image; verify replays at most this many
# float32 rounding of the threshold baked into the served graph
THRESHOLD_RTOL = 1e-6


class VerifyError(InputError):
    """The held-out images cannot be found or are not the ones the package was calibrated on."""


class VerifyRow(BaseModel):
    """One held-out image: in-process vs served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product: str
    image: str
    local_score: float
    local_verdict: str
    threshold: float
    served_score: float | None = None
    served_verdict: str | None = None
    served_threshold: float | None = None
    relative_diff: float | None = None  # |served - in-process| / |threshold|
    problem: str | None = None  # None: agrees within the tolerance

    @property
    def ok(self) -> bool:
        return self.problem is None


class VerifyReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    tolerance: float
    rows: list[VerifyRow]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def max_relative_diff(self) -> float | None:
        diffs = [r.relative_diff for r in self.rows if r.relative_diff is not None]
        return max(diffs) if diffs else None


@dataclass(frozen=True)
class HeldOutImage:
    name: str  # relative to the fitted data folder (or as recorded, for older packages)
    data: bytes


def _calibration_record(
    package: ModelPackage, product: str | None, data_dir: Path | None
) -> tuple[dict, Path | None]:
    """calibration.json's record of the product and the folder its held-out files are relative to.

    A unified package records every product (relative to that product's folder): `--data DIR` is
    then the folder holding the product folders, and without it the folders it was trained from."""
    record = json.loads(package.path("calibration.json").read_text())
    if not package.is_unified:
        return record, data_dir
    name = package.resolve_product(product)
    if data_dir is not None:
        return record[name], Path(data_dir) / name
    roots = json.loads(package.path("unified.json").read_text())["products"]
    return record[name], Path(roots[name])


def held_out_images(
    package: ModelPackage, data_dir: Path | None, product: str | None = None
) -> list[HeldOutImage]:
    """The package's calibration images (a unified package: `product`'s), checked against the
    SHA-256 recorded at calibration time.

    Raises:
        VerifyError: calibration.json records no images, one is missing or its bytes differ.
    """
    path = package.path("calibration.json")
    record, data_dir = _calibration_record(package, product, data_dir)
    files: list[str] = record.get("holdout_files") or []
    digests: list[str] = record.get("holdout_sha256") or []
    if data_dir is not None and files:
        root = Path(data_dir).resolve()
        paths = [(name, (root / name).resolve()) for name in files]
        outside = [name for name, p in paths if not p.is_relative_to(root)]
        if outside:
            raise VerifyError(f"{path}: held-out images {outside} lie outside --data {data_dir}")
    elif record.get("holdout"):
        paths = [(name, Path(name)) for name in record["holdout"]]
    else:
        raise VerifyError(f"{path} records no held-out images; re-fit the product with this adinspect")
    images = []
    step = -(-len(paths) // MAX_IMAGES)  # every step-th: at most MAX_IMAGES, spread over the list
    for index, (name, image_path) in list(enumerate(paths))[::step]:
        if not image_path.is_file():
            hint = "pass --data DIR, the folder `adinspect fit --data` was given" if data_dir is None else ""
            raise VerifyError(f"held-out image {image_path} of {package.root} not found; {hint}".rstrip("; "))
        data = image_path.read_bytes()
        if index < len(digests) and hashlib.sha256(data).hexdigest() != digests[index]:
            raise VerifyError(
                f"{image_path} differs from the image {package.product!r} was calibrated on (SHA-256 in "
                f"{path}); point --data at the data the package was fitted on"
            )
        images.append(HeldOutImage(name, data))
    return images


def mirrored(image: HeldOutImage) -> HeldOutImage:
    """The image mirrored left-right, as PNG bytes (lossless: both sides decode the same pixels)."""
    return HeldOutImage(image.name, encode_png(decode_image(image.data, image.name)[:, ::-1]))


def compare(
    product: str,
    name: str,
    local: tuple[float, str, float],
    served: tuple[float, str, float] | None,
    tolerance: float,
    error: str | None = None,
) -> VerifyRow:
    """One row from (score, verdict, threshold) in-process and served (None: the request failed)."""
    score, verdict, threshold = local
    row = VerifyRow(
        product=product, image=name, local_score=score, local_verdict=verdict, threshold=threshold
    )
    if served is None:
        return row.model_copy(update={"problem": f"served request failed: {error}"})
    s_score, s_verdict, s_threshold = served
    finite = math.isfinite(score) and math.isfinite(s_score)
    diff = abs(s_score - score) / abs(threshold) if finite else None
    problems = [] if math.isfinite(score) else ["in-process score is not finite"]
    if not math.isfinite(s_score):
        problems.append("served score is not finite")
    elif diff is not None and diff > tolerance:
        problems.append(f"score differs by {diff:.2%} of the threshold (> {tolerance:.2%})")
    if s_verdict != verdict:
        problems.append(f"verdict {s_verdict} served, {verdict} in-process")
    if not math.isclose(s_threshold, threshold, rel_tol=THRESHOLD_RTOL):
        problems.append(f"served threshold {s_threshold:.6g} is not the package's {threshold:.6g}")
    served_fields = {
        "served_score": s_score,
        "served_verdict": s_verdict,
        "served_threshold": s_threshold,
        "relative_diff": diff,
        "problem": "; ".join(problems) or None,
    }
    return row.model_copy(update=served_fields)


def verify_product(
    client, model_dir: Path, data_dir: Path | None, tolerance: float = DEFAULT_TOLERANCE
) -> list[VerifyRow]:
    """Rows for one package's held-out images against the served ensembles (`client`: an
    `adinspect.client.InspectionClient`); a unified package's products one after the other."""
    from adinspect.package import ModelPackage

    package = ModelPackage.load(Path(model_dir))
    rows = []
    for product in package.products:
        rows += _verify_one(client, Path(model_dir), product, data_dir, tolerance)
    return rows


def _verify_one(
    client, model_dir: Path, product: str, data_dir: Path | None, tolerance: float
) -> list[VerifyRow]:
    from adinspect.client import InspectionError
    from adinspect.runtime.inspector import Inspector

    inspector = Inspector(model_dir, product=product)
    images = [mirrored(image) for image in held_out_images(inspector.package, data_dir, product)]
    rows = []
    for image in images:
        local = inspector.inspect(decode_image(image.data, image.name), image.name).result
        try:
            served = client.inspect(image.data, product, name=image.name)
        except InspectionError as exc:
            rows.append(compare(product, image.name, _triple(local), None, tolerance, str(exc)))
            continue
        rows.append(compare(product, image.name, _triple(local), _triple(served), tolerance))
    return rows


def _triple(result) -> tuple[float, str, float]:
    return float(result.score), str(result.verdict), float(result.threshold)


def verify(
    url: str,
    model_dirs: Sequence[Path],
    data_dir: Path | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    timeout_s: float = 30.0,
) -> VerifyReport:
    """Run `verify_product` for every package against the Triton at `url` (gRPC HOST:PORT)."""
    from adinspect.client import InspectionClient

    if not model_dirs:
        raise VerifyError("no model packages given; pass --models MODEL_DIR...")
    if not 0 <= tolerance < 1:
        raise VerifyError(f"--tolerance is a fraction of the threshold in [0, 1), got {tolerance}")
    rows: list[VerifyRow] = []
    with InspectionClient(url, deadline_s=timeout_s) as client:
        for model_dir in model_dirs:
            rows += verify_product(client, model_dir, data_dir, tolerance)
    return VerifyReport(url=url, tolerance=tolerance, rows=rows)


def format_table(report: VerifyReport) -> str:
    """A readable table of every image, then one summary line."""
    header = (
        f"{'product':<12} {'image':<34} {'in-process':>11} {'served':>11} {'diff/thr':>9}  verdicts  status"
    )
    lines = [header, "-" * len(header)]
    for r in report.rows:
        served = "-" if r.served_score is None else f"{r.served_score:.6g}"
        diff = "-" if r.relative_diff is None else f"{r.relative_diff:.2e}"
        verdicts = f"{r.local_verdict}/{r.served_verdict or '-'}"
        status = "ok" if r.ok else f"DIFFERS: {r.problem}"
        image = r.image if len(r.image) <= 34 else "..." + r.image[-31:]
        scores = f"{r.local_score:>11.6g} {served:>11} {diff:>9}"
        lines.append(f"{r.product:<12} {image:<34} {scores}  {verdicts:<9} {status}")
    bad = sum(not r.ok for r in report.rows)
    worst = report.max_relative_diff
    lines.append(
        f"{'PASS' if report.passed else 'FAIL'}: {len(report.rows) - bad} of {len(report.rows)} held-out "
        f"images agree (tolerance {report.tolerance:.2%} of the threshold; largest difference "
        f"{'-' if worst is None else f'{worst:.2e}'}) at {report.url}"
    )
    return "\n".join(lines)
