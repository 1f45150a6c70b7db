"""DeiT-Tiny (Touvron et al. 2021, "Training data-efficient image transformers"), sized for 32x32 inputs.

The "DeiT" row of the duality paper's Table 6. DeiT-Ti's transformer (embedding 192, depth 12, 3 heads, MLP
ratio 4, a class token, learned position embeddings, pre-norm blocks with LayerNorm and GELU) on 4x4 patches,
so a 32x32 image is 8x8 = 64 tokens (the paper does not state its patch size; 16x16 patches would leave only
4 tokens on CIFAR). There is no distillation token: the paper names no teacher network, so the model learns
from the class token's cross-entropy alone. Attention goes through
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on GPU). Initialisation as in DeiT/timm:
truncated normal (std 0.02) for the class token, position embeddings and linear weights; zero biases;
LayerNorm at (1, 0). 5,362,762 parameters for 32x32x3 inputs, patch 4 and 10 classes; with ImageNet's 224x224
inputs, patch 16 and 1000 classes the same code gives DeiT-Ti's 5,717,416.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samat.core.errors import ParameterError

from .normalize import Normalize


class Attention(nn.Module):
    """Multi-head self-attention: softmax(q k^T / sqrt(d_head)) v per head (Vaswani et al. 2017)."""

    def __init__(self, dim: int, num_heads: int, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)  # DeiT uses qkv_bias=True
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = proj_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (b, heads, n, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)  # DeiT-Ti trains without attention dropout
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))
        return F.dropout(out, p=self.proj_drop, training=self.training)


class Mlp(nn.Module):
    """Linear-GELU-Linear with hidden width ``mlp_ratio * dim``."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(dim, hidden), nn.Linear(hidden, dim), drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(F.gelu(self.fc1(x)), p=self.drop, training=self.training)
        return F.dropout(self.fc2(x), p=self.drop, training=self.training)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)), with optional stochastic depth."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path = drop_path

    def _drop_path(self, x: torch.Tensor) -> torch.Tensor:
        """Stochastic depth (Huang et al. 2016): drop a residual branch per example, rescale the kept ones."""
        if not self.training or self.drop_path == 0.0:
            return x
        keep = 1.0 - self.drop_path
        return x * x.new_empty(x.shape[0], 1, 1).bernoulli_(keep) / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._drop_path(self.attn(self.norm1(x)))
        return x + self._drop_path(self.mlp(self.norm2(x)))


class DeiT(nn.Module):
    """Vision transformer with a class token; ``normalize`` is the first module (inputs in [0, 1]).

    >>> model = DeiT(image_size=(32, 32), num_classes=10)
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, image_size: tuple[int, int] = (32, 32), num_classes: int = 10, in_channels: int = 3,
                 mean: tuple[float, ...] = (), std: tuple[float, ...] = (), *, patch_size: int = 4,
                 embed_dim: int = 192, depth: int = 12, num_heads: int = 3, mlp_ratio: float = 4.0,
                 drop: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        h, w = image_size
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ParameterError("patch_size", patch_size,
                                 f"a positive divisor of the image height and width ({h}x{w})")
        if embed_dim % num_heads:
            raise ParameterError("num_heads", num_heads, f"a divisor of embed_dim={embed_dim}")
        num_patches = (h // patch_size) * (w // patch_size)
        self.normalize = Normalize(mean, std)
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = drop
        # Stochastic-depth rate rising linearly with depth (DeiT trains ImageNet with drop_path=0.1; default 0 here).
        self.blocks = nn.Sequential(*(
            Block(embed_dim, num_heads, mlp_ratio, drop, drop_path * i / max(depth - 1, 1)) for i in range(depth)))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)  # (b, tokens, dim)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.blocks(F.dropout(x, p=self.pos_drop, training=self.training))
        return self.head(self.norm(x)[:, 0])  # classify from the class token


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def deit_tiny(image_size: tuple[int, int] = (32, 32), num_classes: int = 10, in_channels: int = 3,
              mean: tuple[float, ...] = (), std: tuple[float, ...] = (), *, patch_size: int = 4) -> DeiT:
    """DeiT-Tiny (embedding 192, depth 12, 3 heads, MLP ratio 4) on ``patch_size`` patches."""
    return DeiT(image_size, num_classes, in_channels, mean, std, patch_size=patch_size, embed_dim=192, depth=12,
                num_heads=3, mlp_ratio=4.0)
