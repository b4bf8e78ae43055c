"""Face ViTs in insightface ``arcface_torch``'s ``vit_t`` / ``vit_s`` / ``vit_b`` layout (docs/models.md).

112x112 RGB crops are cut into 9x9 patches (``patch_embed.proj``, a 9x9/9 conv: a 12x12 grid of
144 tokens), a learned ``pos_embed`` is added (no class token), ``blocks`` of pre-norm
transformer layers (``norm1``, ``attn.qkv`` without bias, ``attn.proj``, ``norm2``, ``mlp.fc1``,
ReLU6, ``mlp.fc2``), a final LayerNorm ``norm``, and the ``feature`` head over all tokens:
``Linear(144*C, C, bias=False), BN1d, Linear(C, embedding, bias=False), BN1d`` (eps 2e-5).
Sizes: ``vit_t`` C=256, 12 blocks; ``vit_s`` C=512, 12 blocks; ``vit_b`` C=512, 24 blocks; 8 heads.
Training-only parts of the reference (stochastic depth, token masking) are not built: they
hold no weights and do nothing in eval mode.

A block outputs tokens (B, 144, C); :func:`tokens_to_map` (the registered ``feature_reshape``)
turns them into the (B, C, 12, 12) map every attribution method explains.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch
from torch import Tensor, nn

from scout_exp.errors import UserError
from scout_exp.models.iresnet import ARCFACE_INPUT
from scout_exp.models.registry import register_model
from scout_exp.models.state_dicts import load_exact, read_state_dict, register_layout

#: embedding width C and number of blocks of each published size
VIT_SIZES: dict[str, tuple[int, int]] = {"t": (256, 12), "s": (512, 12), "b": (512, 24)}
PATCH = 9
HEADS = 8


class Attention(nn.Module):
    """Multi-head self-attention: ``qkv`` (no bias), scaled dot product, ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """``fc2(ReLU6(fc1(x)))`` with a hidden width of 4 C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 4)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``+ mlp(norm2(x))``; (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """``proj`` (a ``patch``x``patch`` conv of stride ``patch``) then flattening: (B, 3, H, W) -> (B, N, C)."""

    def __init__(self, dim: int, patch: int = PATCH) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class FaceViT(nn.Module):
    """arcface_torch VisionTransformer: (B, 3, 112, 112) -> (B, embedding)."""

    def __init__(self, dim: int, depth: int, embedding: int = 512, size: int = 112) -> None:
        super().__init__()
        self.grid = size // PATCH
        tokens = self.grid * self.grid
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))  # held by published weights; used in training only
        self.blocks = nn.ModuleList([Block(dim, HEADS) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.feature = nn.Sequential(
            nn.Linear(dim * tokens, dim, bias=False),
            nn.BatchNorm1d(dim, eps=2e-5),
            nn.Linear(dim, embedding, bias=False),
            nn.BatchNorm1d(embedding, eps=2e-5),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.feature(self.norm(x).flatten(1))

    def feature_reshape(self, tokens: Tensor) -> Tensor:
        """Tokens (B, N, C) of a block -> (B, C, grid, grid); UserError when N is not the patch grid."""
        return tokens_to_map(tokens, self.grid)


def tokens_to_map(tokens: Tensor, grid: int) -> Tensor:
    """(B, grid*grid, C) tokens (no class token) -> (B, C, grid, grid), row-major as the patches were cut.

    Raises UserError when the layer's output is not such a token sequence (e.g. a Linear inside a block).
    """
    if tokens.dim() != 3 or tokens.shape[1] != grid * grid:
        raise UserError(
            f"layer output of shape {tuple(tokens.shape)} is not a sequence of {grid * grid} patch tokens; "
            "choose a transformer block (e.g. attribution.layer=blocks.11) or patch_embed.proj"
        )
    batch, _, dim = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, dim, grid, grid)


@register_layout
def describe_face_vit(keys: Collection[str]) -> str | None:
    """``"a face ViT with 24 blocks of width 512 (model=face_vit_b)"`` for arcface_torch ViT keys."""
    if "patch_embed.proj.weight" not in keys or "feature.0.weight" not in keys:
        return None
    depth = len({k.split(".")[1] for k in keys if k.startswith("blocks.")})
    return f"a face ViT with {depth} blocks" + "".join(
        f" (model=face_vit_{name})" for name, (_, d) in VIT_SIZES.items() if d == depth
    )


def _factory(size: str) -> Callable[..., nn.Module]:
    dim, depth = VIT_SIZES[size]

    def face_vit(num_classes: int = 512, weights: str | None = None) -> nn.Module:
        model = FaceViT(dim, depth, embedding=num_classes)
        if weights is not None:
            load_exact(model, read_state_dict(weights), weights, f"face_vit_{size}")
        return model

    face_vit.__doc__ = (
        f"arcface_torch ``vit_{size}`` (width {dim}, {depth} blocks), ``num_classes``-d embeddings; "
        "``weights``: its ``backbone.pth`` (UserError naming the mismatching keys when it does not fit)."
    )
    return face_vit


for _size, (_, _depth) in VIT_SIZES.items():
    register_model(
        name=f"face_vit_{_size}", input_spec=ARCFACE_INPUT, target_layer=f"blocks.{_depth - 1}", classifier="feature.2"
    )(_factory(_size))
