"""DiT for latent MeanFlow: `u_theta(z, r, t | y)`, the average velocity over [r, t] (docs/method.md 2).

A Diffusion Transformer in the style of facebookresearch/DiT `models.py`, built from timm's `PatchEmbed`,
`Attention` and `Mlp`, with adaLN-Zero conditioning on `t`, on `t - r` (one sinusoidal + MLP embedder each)
and on the class label. Differences from DiT: the output is the latent channels only (no learned sigma), the
second time embedder for `t - r`, label dropout lives in the training code (the model receives `y` with
`null_class` already applied), and the positional embedding is a buffer, not a frozen parameter.

Forward-mode AD is not implemented for the fused SDPA kernels (flash/efficient on GPU, flash on CPU), so
`DiT.jvp` runs attention on timm's explicit `softmax(q k^T / sqrt(d)) v` path; `forward` keeps the fused one.
"""
from __future__ import annotations

import functools

import inspect
import math
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
from timm.layers import Attention, Mlp, PatchEmbed
from torch import nn

FREQUENCY_EMBEDDING_SIZE = 256


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


@contextmanager
def math_attention(module: nn.Module) -> Iterator[None]:
    """Run every timm `Attention` inside `module` on the explicit softmax path, which forward-mode AD supports.

    timm chooses per instance through the `fused_attn` attribute (set at construction from
    `timm.layers.use_fused_attn()`); it is only `Final` for TorchScript, so eager code may flip it.
    """
    attentions = [m for m in module.modules() if isinstance(m, Attention)]
    saved = [m.fused_attn for m in attentions]
    for m in attentions:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, fused in zip(attentions, saved):
            m.fused_attn = fused


#################################################################################
#               Embedding Layers for Times and Class Labels                     #
#################################################################################

class TimestepEmbedder(nn.Module):
    """Embeds a scalar time in [0, 1] (used as is, no rescaling) as a vector: sinusoids, then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = FREQUENCY_EMBEDDING_SIZE):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """(N,) times -> (N, dim) cosines then sines at geometrically spaced frequencies 1 ... 1/max_period."""
        half = dim // 2
        # In t's own dtype (not float32 as in DiT) so float64 checks of the JVP stay float64 throughout.
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
        args = t[:, None] * freqs[None]                                          # (N, half)
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)        # (N, 2 * half)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)       # (N, F)
        return self.mlp(t_freq.to(self.mlp[0].weight.dtype))                     # (N, D)


class LabelEmbedder(nn.Module):
    """Embeds class labels; index `num_classes` is the null class that label dropout maps to."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)
        self.null_class = num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)                                      # (N, D)


#################################################################################
#                                 Core DiT Model                                #
#################################################################################

class DiTBlock(nn.Module):
    """A transformer block with adaptive layer norm zero (adaLN-Zero) conditioning."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads=num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(
            in_features=hidden_size,
            hidden_features=int(hidden_size * mlp_ratio),
            act_layer=lambda: nn.GELU(approximate="tanh"),
            drop=0,
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (N, T, D)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))   # (N, T, D)
        return x


class FinalLayer(nn.Module):
    """Modulated layer norm, then a linear map from each token to its patch of output channels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = modulate(self.norm_final(x), shift, scale)                           # (N, T, D)
        return self.linear(x)                                                    # (N, T, p * p * C)


class DiT(nn.Module):
    """Class-conditional Diffusion Transformer predicting the MeanFlow average velocity `u(z, r, t | y)`."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
    ):
        super().__init__()
        _check_config(dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                           hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                           num_classes=num_classes))
        self.input_size = input_size
        self.in_channels = in_channels
        self.out_channels = in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.null_class = num_classes

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size, bias=True)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.h_embedder = TimestepEmbedder(hidden_size)  # embeds the interval length h = t - r
        self.y_embedder = LabelEmbedder(num_classes, hidden_size)
        # A buffer: a fixed function of the config, so it is neither trained, nor decayed, nor counted.
        self.register_buffer("pos_embed", torch.zeros(1, self.x_embedder.num_patches, hidden_size))

        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def io_kwargs(self) -> dict[str, int]:
        """The constructor keys that fix what this network takes and returns (latent shape and classes): a
        network built with them (a learned velocity head, mfsweep/method/proxy.py) fits beside it."""
        return {"input_size": self.input_size, "in_channels": self.in_channels, "num_classes": self.null_class}

    def initialize_weights(self) -> None:
        # Transformer linears: Xavier-uniform weights and zero biases, as in ViT.
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.apply(_basic_init)

        # Fixed 2-D sin-cos positional embedding: no parameters to learn, and it is what DiT was tuned with.
        grid_size = self.input_size // self.patch_size
        self.pos_embed.copy_(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid_size).unsqueeze(0))

        # The patch embedding is a linear map of flattened patches: initialise it like one, not like a conv.
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.zeros_(self.x_embedder.proj.bias)

        # Small label and time embeddings, so the conditioning starts as a gentle perturbation.
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        for embedder in (self.t_embedder, self.h_embedder):
            nn.init.normal_(embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(embedder.mlp[2].weight, std=0.02)

        # adaLN-Zero: zero modulations make every gate 0, so each block starts as the identity.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)

        # Zero output layer: the initial prediction is u = 0 exactly, for every input.
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p * p * C) tokens -> (N, C, H, W) latents."""
        c, p = self.out_channels, self.patch_size
        h = w = self.input_size // p
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`u_theta(z, r, t | y)`: z (N, C, H, W), r and t (N,) with r <= t, y (N,) long -> (N, C, H, W)."""
        self._check_inputs(z, r, t, y)
        x = self.x_embedder(z) + self.pos_embed                                  # (N, T, D), T = H * W / p ** 2
        c = self.t_embedder(t) + self.h_embedder(t - r) + self.y_embedder(y)     # (N, D)
        for block in self.blocks:
            x = block(x, c)                                                      # (N, T, D)
        x = self.final_layer(x, c)                                               # (N, T, p * p * C)
        return self.unpatchify(x)                                                # (N, C, H, W)

    def jvp(
        self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor,
        dz: torch.Tensor, dr: torch.Tensor, dt: torch.Tensor, y: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(u, du)`: `forward(z, r, t, y)` and its directional derivative along `(dz, dr, dt)`.

        One `torch.func.jvp` pass with attention on the math path. `u` carries the autograd graph to the
        parameters (the loss backpropagates through it); `du` is meant for the stop-gradient target.
        """
        with math_attention(self):
            return torch.func.jvp(lambda z_, r_, t_: self(z_, r_, t_, y), (z, r, t), (dz, dr, dt))

    def _check_inputs(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        expected = (self.in_channels, self.input_size, self.input_size)
        if z.dim() != 4 or tuple(z.shape[1:]) != expected:
            raise ValueError(f"z must have shape (N, {', '.join(map(str, expected))}), got {tuple(z.shape)}")
        for name, value in (("r", r), ("t", t), ("y", y)):
            if tuple(value.shape) != (z.shape[0],):
                raise ValueError(f"{name} must have shape ({z.shape[0]},) to match z, got {tuple(value.shape)}")


#################################################################################
#                   Sine/Cosine Positional Embedding Functions                  #
#################################################################################

def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> torch.Tensor:
    """(grid_size ** 2, embed_dim) embedding of a square token grid in row-major order (MAE / DiT layout):
    the first half of the channels encodes the column, the second half the row."""
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    emb_col = get_1d_sincos_pos_embed(embed_dim // 2, cols.reshape(-1))         # (T, D / 2)
    emb_row = get_1d_sincos_pos_embed(embed_dim // 2, rows.reshape(-1))         # (T, D / 2)
    return torch.cat([emb_col, emb_row], dim=1).float()                         # (T, D)


def get_1d_sincos_pos_embed(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """(M,) positions -> (M, embed_dim): sines then cosines at frequencies 1 ... 1/10000."""
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2))
    out = pos[:, None] * omega[None]                                             # (M, D / 2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)                    # (M, D)


#################################################################################
#                          Configuration and Size                               #
#################################################################################

_DEFAULTS = {name: p.default for name, p in inspect.signature(DiT.__init__).parameters.items() if name != "self"}


def _check_config(config: Mapping[str, Any]) -> None:
    for key in ("input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}")
    if not isinstance(config["num_classes"], int) or config["num_classes"] < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {config['num_classes']!r}")
    if not isinstance(config["mlp_ratio"], (int, float)) or config["mlp_ratio"] <= 0:
        raise ValueError(f"mlp_ratio must be positive, got {config['mlp_ratio']!r}")
    if config["input_size"] % config["patch_size"]:
        raise ValueError(f"input_size {config['input_size']} is not divisible by patch_size {config['patch_size']}")
    if config["hidden_size"] % config["num_heads"]:
        raise ValueError(f"hidden_size {config['hidden_size']} is not divisible by num_heads {config['num_heads']}")
    if config["hidden_size"] % 4:
        # The 2-D sin-cos embedding splits the channels into two halves of sine/cosine pairs.
        raise ValueError(f"hidden_size must be a multiple of 4, got {config['hidden_size']}")


def count_parameters(config: Mapping[str, Any]) -> int:
    """The number of parameters of `DiT(**config)`, computed from the config without building it.

    `config` holds `DiT.__init__` arguments; missing ones take their defaults.
    """
    unknown = sorted(set(config) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown DiT config key(s): {', '.join(unknown)}")
    cfg = {**_DEFAULTS, **config}
    _check_config(cfg)
    d, p, c, f = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"], FREQUENCY_EMBEDDING_SIZE
    mlp_hidden = int(d * cfg["mlp_ratio"])
    patch_embed = c * p * p * d + d
    time_embedder = (f * d + d) + (d * d + d)
    label_embedder = (cfg["num_classes"] + 1) * d
    block = (
        (3 * d * d + 3 * d) + (d * d + d)                        # qkv, attention output projection
        + (d * mlp_hidden + mlp_hidden) + (mlp_hidden * d + d)   # MLP
        + (6 * d * d + 6 * d)                                    # adaLN modulation
    )
    final_layer = (d * p * p * c + p * p * c) + (2 * d * d + 2 * d)
    return patch_embed + 2 * time_embedder + label_embedder + cfg["depth"] * block + final_layer


#################################################################################
#                                   DiT Configs                                  #
#################################################################################

# DiT's model zoo: (depth, hidden_size, num_heads) per size, each at patch 2, 4 and 8. conf/model/dit_*.yaml spell
# the same numbers out for Hydra; tests/models/test_dit.py holds the two together.
SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}
PATCHES = (2, 4, 8)


def size_arguments(name: str) -> dict[str, int]:
    """`DiT(**...)`'s size arguments of a zoo name such as "DiT-B/4"."""
    size, patch = name.removeprefix("DiT-").split("/")
    depth, hidden_size, num_heads = SIZES[size]
    return {"depth": depth, "hidden_size": hidden_size, "patch_size": int(patch), "num_heads": num_heads}


DiT_models = {f"DiT-{s}/{p}": functools.partial(DiT, **size_arguments(f"DiT-{s}/{p}")) for s in SIZES for p in PATCHES}
