"""The work behind a unified package's Python-backend model `invad_<model>` (cpu flavour): decode,
preprocess and invad.onnx for every product; each product's `postprocess_<product>` then applies its
own threshold. Refusals follow `steps`: only a message outlives a refused request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from adinspect.contracts import UNIFIED, UNIFIED_OUT
from adinspect.geometry import PreprocessSpec
from adinspect.imageio import DEFAULT_DECODE_BUDGET
from adinspect.repository.steps import Refusal, RequestError, preprocess_request


class UnifiedRequest(NamedTuple):
    """One request to a unified package's shared model `invad_<model>` (cpu flavour)."""

    image_bytes: np.ndarray | None
    image_raw: np.ndarray | None
    name: str = "request"


@dataclass(frozen=True)
class UnifiedPipeline:
    """`invad_<model>` of the cpu flavour: decode, preprocess and invad.onnx for every product of a
    unified package; each product's `postprocess_<product>` then applies its own threshold.

    Args:
        session: ONNX Runtime session of invad.onnx (image → anomaly_map, score).
    """

    spec: PreprocessSpec
    max_pixels: int
    session: Any
    max_bytes: int | None = DEFAULT_DECODE_BUDGET

    def run(self, requests: Sequence[UnifiedRequest]) -> list[dict[str, np.ndarray] | Refusal]:
        """Each request's anomaly_map (1, 1, S, S), score (1, 1) and original_size (1, 2), or the
        Refusal it gets; the valid requests of a batch go through the model together."""
        answers: list[dict[str, np.ndarray] | Refusal] = []
        valid: list[tuple[int, np.ndarray, np.ndarray]] = []
        for index, request in enumerate(requests):
            try:
                image, size = preprocess_request(
                    request.image_bytes, request.image_raw, self.spec, self.max_pixels, request.name,
                    self.max_bytes,
                )  # fmt: skip
                valid.append((index, image, size))
                answers.append({})
            except RequestError as exc:
                answers.append(Refusal(str(exc)))  # the message only: the exception dies here
        if not valid:
            return answers
        batch = np.concatenate([v[1] for v in valid])
        amap, score = self.session.run([UNIFIED.anomaly_map, UNIFIED.score], {UNIFIED.image: batch})
        for row, (index, _, size) in enumerate(valid):
            answers[index] = {
                UNIFIED_OUT.anomaly_map: amap[row : row + 1],
                UNIFIED_OUT.score: score[row : row + 1].reshape(1, 1),
                UNIFIED_OUT.original_size: size,
            }
        return answers

    def warm_up(self) -> None:
        """One black 64x64 image through the model: the first camera request pays no start-up."""
        (answer,) = self.run([UnifiedRequest(None, np.zeros((1, 64, 64, 3), np.uint8), "warm-up")])
        if isinstance(answer, Refusal):
            raise RequestError(answer.message)
