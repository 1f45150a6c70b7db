"""The papers' linear classifier f_w(x) = sgn(w . x) on the Gaussian robust/non-robust model.

Duality paper Section 3 and SAM-alone paper Section 3: no bias; the label is the sign of z = w . x. For two
classes the logits are (-z/2, +z/2), class 1 meaning y = +1, so that the cross-entropy of the logits is exactly
the logistic loss: -log softmax(-z/2, z/2)_y = log(1 + exp(-y z)). For other class counts it is a bias-free
linear map (as ``nn.Linear(d, k, bias=False)``). Image inputs are flattened, so it also serves as a linear
baseline on images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .normalize import Normalize


class LinearClassifier(nn.Module):
    """Bias-free linear classifier; ``weight`` is the vector w (shape ``(d,)``) for two classes, else ``(k, d)``.

    >>> model = LinearClassifier(3, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
    >>> model(torch.tensor([[1.0, 1.0, 1.0]])).tolist()
    [[-3.0, 3.0]]
    """

    def __init__(self, in_features: int, num_classes: int = 2,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.binary = num_classes == 2
        self.weight = nn.Parameter(torch.empty((in_features,) if self.binary else (num_classes, in_features)))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation, U(-1/sqrt(d), 1/sqrt(d))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x).flatten(1)
        if not self.binary:
            return F.linear(x, self.weight)
        z = (x @ self.weight).unsqueeze(1)  # (b, 1): the margin w . x
        return torch.cat((-0.5 * z, 0.5 * z), dim=1)
