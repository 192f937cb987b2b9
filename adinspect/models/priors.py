"""What ADClick may see of the image besides its residual: two optional priors, added to the
embedded residual before the click embedding and the language fusion.

- `ImageStem` (`image_stem` > 0): three stride-2 convs on the normalised image, trained from
  scratch on synthetic anomalies.
- `FeaturePrior` (`image_features`): the backbone's own ImageNet features F of the image, the
  tensor the residual is computed from (R = f* - F), so a pretrained image encoder's view of the
  part costs no extra backbone pass. Interactive segmenters that generalise to objects they were
  not trained on (RITM, SimpleClick, LAVT) start from a pretrained encoder; the residual alone says
  where the image differs from the good ones, F also says what is there, so a click can find the
  edge of a defect the residual only partly lights up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ImageStem(nn.Module):
    """Normalised image (B, 3, H, W) → (B, C_1, h, w): stride-2 3x3 convs down to the grid, then 1x1.

    Four stride-2 convs at most (H/h = 8 for the cpu preset needs three); any rest is area-pooled."""

    def __init__(self, channels: int, patch: int, out_dim: int) -> None:
        super().__init__()
        n = min(max(int(patch).bit_length() - 1, 1), 4)
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(3 if i == 0 else channels, channels, 3, stride=2, padding=1), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.pool = patch // 2**n
        self.out = nn.Conv2d(channels, out_dim, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.convs(image)
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return self.out(x)


class FeaturePrior(nn.Module):
    """Backbone features F (B, d_f, h, w) → (B, C_1, h, w): standardised per channel, 1x1 conv,
    GELU, 1x1 conv.

    The channel mean and 1/std are buffers set from the training samples' F (`set_statistics`) and
    exported with the model: F's layers differ in scale by orders of magnitude (a stride-4 map
    after batch norm and ReLU6 next to a stride-16 one), and the network should not have to learn
    that from a few thousand steps. A new prior starts at zero (the last conv is zero-initialised),
    so training begins from the residual-only behaviour and adds what F helps with.
    """

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, channels: int, out_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("inv_std", torch.ones(channels))
        last = nn.Conv2d(out_dim, out_dim, 1, bias=False)
        nn.init.zeros_(last.weight)
        self.net = nn.Sequential(nn.Conv2d(channels, out_dim, 1), nn.GELU(), last)

    @torch.no_grad()
    def set_statistics(self, features: torch.Tensor, chunk: int = 64) -> None:
        """Channel mean and 1/std of training features (N, d_f, h, w), in chunks (fp16 in, fp64 sums)."""
        total = torch.zeros(features.shape[1], dtype=torch.float64)
        square = torch.zeros_like(total)
        for i in range(0, len(features), chunk):
            x = features[i : i + chunk].double()
            total += x.sum((0, 2, 3))
            square += x.square().sum((0, 2, 3))
        n = features.shape[0] * features.shape[2] * features.shape[3]
        mean = total / n
        std = (square / n - mean.square()).clamp_min(0).sqrt()
        self.mean.copy_(mean.float())
        self.inv_std.copy_((1.0 / std.clamp_min(1e-6)).float())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.mean[None, :, None, None]) * self.inv_std[None, :, None, None]
        return self.net(x)
