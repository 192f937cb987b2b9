"""Memory plan of a fit: estimate before any work, size every chunk from the budget, report the peak.

Pure arithmetic over the config and shapes (no tensors), so the check runs before the first image is
read. The estimates are deliberately simple upper-bound models of where fit's memory goes; the
measured peak (`peak_rss_bytes`) is reported next to them in the model card.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from adinspect.config import PipelineConfig
from adinspect.errors import InputError
from adinspect.residual.model import disc_offsets
from adinspect.residual.subset import coreset_size

MB = 1 << 20
GB = 1 << 30
DEFAULT_BUDGET_FRACTION = 0.7  # of the RAM available when fit starts
MAX_BATCH = 8  # larger batches buy no speed on CPU for these models
CHUNK_CAP_BYTES = 1 * GB  # one chunk's working set; chunks only batch work, they do not need to be big
RUNTIME_BYTES = 1 * GB  # python, torch, ONNX Runtime, opencv; a cpu fit of 47 references peaked at 1.5 GB


class BudgetError(InputError):
    """The fit would need more memory than the budget allows; the message says how to lower it."""


@dataclass(frozen=True)
class Shapes:
    """Per-image tensor shapes of a config: features (d_f, h, w), global map (c_1, h_g, w_g)."""

    feature_dim: int
    grid: tuple[int, int]  # (h, w)
    global_channels: int
    global_grid: tuple[int, int]  # (h_g, w_g)

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def global_cells(self) -> int:
        return self.global_grid[0] * self.global_grid[1]


@dataclass(frozen=True)
class MemoryPlan:
    """What fit expects to hold (bytes) and the chunk sizes that keep it under the budget."""

    budget: int
    runtime: int  # libraries and the backbone's weights
    features: int  # all images' features (fp16) and global maps (fp32)
    bank: int  # the bank as served: fp16 cell-major features + fp32 squared norms
    embed_per_image: int  # backbone activations of one image
    residual_per_image: int  # the residual model's working set for one image (gathered references)
    embed_batch: int
    residual_batch: int

    @property
    def fixed(self) -> int:
        """Held whatever the chunk size: runtime, features, and up to three copies of the bank
        (the reference subset, the cell-major constant, the exported graph's copy)."""
        return self.runtime + self.features + 3 * self.bank

    @property
    def peak(self) -> int:
        return self.fixed + max(
            self.embed_batch * self.embed_per_image, self.residual_batch * self.residual_per_image
        )


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux); physical pages otherwise."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def default_budget() -> int:
    return int(DEFAULT_BUDGET_FRACTION * available_bytes())


def residual_bytes_per_image(config: PipelineConfig, shapes: Shapes, n_refs: int) -> int:
    """Working set of ResidualModel.match for one image: the K gathered reference maps (fp16 and
    fp32), the shifted queries, the (K x offsets) score planes (with global matching the K
    references' cell-by-cell distance planes), and the map at H x W for the blur."""
    m = config.method
    k = min(m.k_neighbors, n_refs)
    cells = shapes.cells
    n_off = len(disc_offsets(m.sigma))
    d = shapes.feature_dim
    per_cell = k * d * (2 + 4) + n_off * d * 4 + k * n_off * 4 * 4 + d * 4 * 3
    if m.matching == "global":  # a (h·w) x m distance plane per reference (m cells searched): torch
        # frees each in turn, but ONNX Runtime (the parity pass, serving) keeps the K planes of the
        # unrolled loop
        searched = cells if m.global_coreset is None else coreset_size(cells, m.global_coreset)
        per_cell += (k + 2) * searched * 4
    # ONNX Runtime's parity pass holds a little more than torch (its own buffers): x 1.5
    height, width = m.shape
    return int(1.5 * (cells * per_cell + 6 * height * width * 4))


def plan_memory(
    config: PipelineConfig, shapes: Shapes, n_images: int, n_refs: int, backbone_params: int
) -> MemoryPlan:
    """Estimate fit's memory for `n_images` (of which `n_refs` go into the bank) and size the chunks.

    Raises:
        BudgetError: one image per chunk would already exceed the budget.
    """
    height, width = config.method.shape
    budget = (config.scale.memory_budget_mb or 0) * MB or default_budget()
    cells = shapes.cells
    per_feature = shapes.feature_dim * cells * 2 + shapes.global_channels * shapes.global_cells * 4
    plan = MemoryPlan(
        budget=budget,
        runtime=RUNTIME_BYTES + 3 * 4 * backbone_params,  # weights, their ONNX export, the session
        features=n_images * per_feature,
        bank=n_refs * cells * (shapes.feature_dim * 2 + 4),
        embed_per_image=height * width * 256 * 4,  # a ResNet's stride-4 stage at 256 channels, fp32, twice
        residual_per_image=residual_bytes_per_image(config, shapes, n_refs),
        embed_batch=1,
        residual_batch=1,
    )
    one = plan.peak
    if one > budget:
        raise BudgetError(_budget_message(config, plan, n_images, n_refs))
    slack = min(budget - plan.fixed, CHUNK_CAP_BYTES)
    return MemoryPlan(
        **{
            **plan.__dict__,
            "embed_batch": max(1, min(MAX_BATCH, slack // plan.embed_per_image)),
            "residual_batch": max(1, min(MAX_BATCH, slack // plan.residual_per_image)),
        }
    )


def _budget_message(config: PipelineConfig, plan: MemoryPlan, n_images: int, n_refs: int) -> str:
    m = config.method
    return (
        f"preset {config.preset!r} needs an estimated {plan.peak / GB:.1f} GB to fit {n_images} images "
        f"({n_refs} references: bank {plan.bank / GB:.2f} GB, features {plan.features / GB:.2f} GB, "
        f"one image through the residual model with K = {m.k_neighbors}: "
        f"{plan.residual_per_image / GB:.2f} GB, "
        f"backbone and runtime {plan.runtime / GB:.2f} GB), above the memory budget of "
        f"{plan.budget / GB:.1f} GB; lower it with fewer references (--max-references N), a smaller K "
        "(--method '{\"k_neighbors\": 16}'), or --preset cpu, or raise --memory-budget (MB)"
    )


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
