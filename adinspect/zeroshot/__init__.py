"""Zero-shot mutual scoring (MuSc, DESIGN.md §9) and cleaning a good set before a fit.

`score_images` scores an unlabelled batch against itself (LNAMD features, MSM, RsCIN);
`adinspect zero-shot` writes its maps, scores, overlays and, on a labelled dataset, the metrics
of `evaluate`; `fit --clean` drops training images whose mutual score stands out.

`score_images` needs torch; it is imported on first use, so that registering the `zero-shot`
command (which every `adinspect` invocation does) never loads torch on a serving machine.
"""

from typing import Any

from adinspect.zeroshot.config import CleanConfig, ZeroShotConfig, ZeroShotError

__all__ = ["CleanConfig", "ZeroShotConfig", "ZeroShotError", "ZeroShotResult", "score_images"]


def __getattr__(name: str) -> Any:
    if name in ("ZeroShotResult", "score_images"):
        from adinspect.zeroshot import api

        return getattr(api, name)
    raise AttributeError(f"module 'adinspect.zeroshot' has no attribute {name!r}")
