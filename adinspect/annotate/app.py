"""HTTP routes of `adinspect annotate` (Starlette) and the static page; JSON in and out.

    GET  /api/images                  queue with states, progress, defect types
    GET  /api/images/{id}             one image: size, decision, URLs of image.png / heatmap.png / mask.png
    POST /api/segment                 {"image", "defect_type", "clicks": [{"x", "y", "positive"}]}
                                      → {"mask": PNG data URL at the original size, "area", ...}
    POST /api/accept                  same body (+ optional "mask": PNG data URL after brush edits)
    POST /api/skip, /api/no_defect    {"image"}
    POST /api/train, GET /api/train   label → train-seg on the accepted labels, and its progress

Errors are {"error": message} with a 4xx status. POST bodies must be `application/json` (a page
of another site cannot send that without a CORS preflight, which is never granted), and the Host
header must be the address the server was started on (no DNS rebinding).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adinspect.annotate.jobs import TRAIN_LOG, TrainJob, train_commands
from adinspect.annotate.service import Annotator, ApiError
from adinspect.annotate.store import ClickPoint
from adinspect.imageio import encode_mask_png

STATIC = Path(__file__).with_name("static")
_PNG_URL = "data:image/png;base64,"


class ImageRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: int = Field(strict=True)


class SegmentBody(ImageRef):
    defect_type: str
    clicks: list[ClickPoint] = Field(min_length=1)
    resolution: Literal["original", "model"] = "original"


class AcceptBody(ImageRef):
    defect_type: str
    clicks: list[ClickPoint] = Field(min_length=1)
    mask: str | None = None  # PNG data URL, the page's mask after brush edits


class TrainBody(BaseModel):
    """train-seg options the page may set; unset ones keep train-seg's defaults."""

    model_config = ConfigDict(extra="forbid")

    pretrain_steps: int | None = Field(default=None, ge=0, strict=True)
    finetune_steps: int | None = Field(default=None, ge=0, strict=True)
    batch_size: int | None = Field(default=None, ge=1, strict=True)
    n_synthetic: int | None = Field(default=None, ge=1, strict=True)
    serve: Literal["auto", "seg"] | None = None


# long: the API's handlers are closures over one annotator, a few lines each, and the route table
# that names them belongs beside them
def create_app(annotator: Annotator, allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app serving `annotator`; `allowed_hosts` guards the Host header (None: any)."""
    jobs: dict[str, TrainJob] = {}

    async def images(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(annotator.listing))

    async def image(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(annotator.describe, request.path_params["image_id"]))

    async def image_file(request: Request) -> Response:
        image_id, kind = request.path_params["image_id"], request.path_params["kind"]
        producers = {
            "image": annotator.image_png,
            "heatmap": annotator.heatmap_png,
            "mask": annotator.saved_mask_png,
        }
        if kind not in producers:
            raise ApiError(404, f"no {kind}.png; an image has image.png, heatmap.png and mask.png")
        data = await run_in_threadpool(producers[kind], image_id)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def segment(request: Request) -> Response:
        body = await _parse(request, SegmentBody)
        seg = await run_in_threadpool(
            annotator.segment, body.image, body.defect_type, body.clicks, body.resolution == "original"
        )
        h, w = seg.mask.shape
        return JSONResponse({
            "image": body.image, "width": w, "height": h, "area": seg.area, "mask": _png_url(seg.mask),
            "clicks_scaled": [{"x": c.x, "y": c.y, "positive": c.positive} for c in seg.clicks_scaled],
        })  # fmt: skip

    async def accept(request: Request) -> Response:
        body = await _parse(request, AcceptBody)
        mask = None if body.mask is None else _png_bytes(body.mask)
        decision = await run_in_threadpool(annotator.accept, body.image, body.defect_type, body.clicks, mask)
        return JSONResponse({"image": body.image, **decision.model_dump()})

    def marker(state: Literal["skipped", "no_defect"]) -> Callable[[Request], Awaitable[Response]]:
        async def mark(request: Request) -> Response:
            body = await _parse(request, ImageRef)
            decision = await run_in_threadpool(annotator.mark, body.image, state)
            return JSONResponse({"image": body.image, **decision.model_dump()})

        return mark

    async def train(request: Request) -> Response:
        job = jobs.get("train")
        if request.method == "GET":
            return JSONResponse(job.status() if job else {"state": "idle"})
        body = await _parse(request, TrainBody)
        if job is not None and job.state == "running":
            raise ApiError(409, "a training job is already running")
        if not any(d.state == "accepted" for d in annotator.store.load().images.values()):
            raise ApiError(409, "nothing accepted yet: accept at least one labelled image first")
        seg_args = [f"--{k.replace('_', '-')}={v}" for k, v in body.model_dump().items() if v is not None]
        commands = train_commands(annotator.model_dir, annotator.data_dir, annotator.store.root, seg_args)
        jobs["train"] = TrainJob(commands, annotator.store.root / TRAIN_LOG)
        return JSONResponse(jobs["train"].status(), status_code=202)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def not_found(request: Request) -> Response:
        raise ApiError(404, f"no such endpoint: {request.method} {request.url.path}")

    async def api_error(request: Request, exc: Exception) -> Response:
        status, message = (exc.status, exc.message) if isinstance(exc, ApiError) else (404, "not found")
        return JSONResponse({"error": message}, status_code=status)

    routes = [
        Route("/", index),
        Route("/api/images", images),
        Route("/api/images/{image_id}", image),
        Route("/api/images/{image_id}/{kind}.png", image_file),
        Route("/api/segment", segment, methods=["POST"]),
        Route("/api/accept", accept, methods=["POST"]),
        Route("/api/skip", marker("skipped"), methods=["POST"]),
        Route("/api/no_defect", marker("no_defect"), methods=["POST"]),
        Route("/api/train", train, methods=["GET", "POST"]),
        Route("/api/{rest:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware, exception_handlers={ApiError: api_error})


async def _parse(request: Request, model: type[Any]) -> Any:
    """A JSON body validated by `model`; anything else is a 4xx naming the problem."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "send the body as JSON with Content-Type: application/json")
    try:
        raw = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON body ({exc})") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ApiError(400, f"{where}: {err['msg']}") from exc


def _png_url(mask: Any) -> str:
    return _PNG_URL + base64.b64encode(encode_mask_png(mask)).decode("ascii")


def _png_bytes(url: str) -> bytes:
    if not url.startswith(_PNG_URL):
        raise ApiError(400, "mask: expected a PNG data URL (data:image/png;base64,...)")
    try:
        return base64.b64decode(url[len(_PNG_URL) :], validate=True)
    except ValueError as exc:
        raise ApiError(400, f"mask: not valid base64 ({exc})") from exc
