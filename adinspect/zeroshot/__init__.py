"""Zero-shot mutual scoring (MuSc, DESIGN.md §9) and cleaning a good set before a fit.

`score_images` scores an unlabelled batch against itself (LNAMD features, MSM, RsCIN);
`adinspect zero-shot` writes its maps, scores, overlays and, on a labelled dataset, the metrics
of `evaluate`; `fit --clean` drops training images whose mutual score stands out.
"""

from adinspect.zeroshot.api import ZeroShotResult, score_images
from adinspect.zeroshot.config import CleanConfig, ZeroShotConfig, ZeroShotError

__all__ = ["CleanConfig", "ZeroShotConfig", "ZeroShotError", "ZeroShotResult", "score_images"]
