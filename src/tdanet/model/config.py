"""TDANet hyper-parameters: one frozen dataclass and its named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

AttentionMode = Literal["frame", "sequence"]
ATTENTION_MODES: tuple[str, ...] = ("frame", "sequence")
# Upper bounds, far above any published model, so that a hostile or corrupt config is refused
# before it can allocate (widths, position table) or run (unfoldings) without end.
MAX_VALUES: dict[str, int] = {
    "out_channels": 8192,
    "in_channels": 8192,
    "num_blocks": 256,
    "upsampling_depth": 16,
    "enc_kernel_size": 1000,
    "num_sources": 16,
    "sample_rate": 768_000,
    "num_heads": 1024,
    "max_positions": 1_000_000,
}
# Largest position table (max_positions * in_channels floats): 256 MiB; the release's is 20 MB.
MAX_POSITION_TABLE = 2**26


@dataclass(frozen=True)
class TDANetConfig:
    """Every hyper-parameter of a TDANet (names follow the authors' release).

    Paper symbols: ``in_channels`` is the width inside the U-block <N>, ``num_blocks``
    the number of unfoldings of the shared block <B>, ``upsampling_depth`` the number
    of scales, S + 1 <S + 1>, ``num_sources`` <C>, ``enc_kernel_size`` the encoder
    window in milliseconds (L = enc_kernel_size * sample_rate / 1000 samples).

    Attributes:
        out_channels: bottleneck width between U-block unfoldings (128 in the release).
        in_channels: width inside the U-block <N> (512).
        num_blocks: calls of the shared U-block <B> (16).
        upsampling_depth: levels of the multi-scale pyramid, S + 1 (5); at least 2.
        enc_kernel_size: encoder kernel in ms (4 for TDANet, 2 for TDANet Large).
        num_sources: separated sources <C> (2).
        sample_rate: sample rate in Hz the model was trained for (16000).
        num_heads: attention heads of the global attention (8).
        attention: ``"frame"`` computes what the released checkpoints compute (each frame
            attends only to itself, a per-frame value and output projection);
            ``"sequence"`` is the paper's multi-head self-attention across the frames of
            one utterance. Both use the same weights; only "frame" reproduces the release.
        max_positions: rows of the sinusoidal position table built up front (10000 in
            the release); longer inputs extend it deterministically (extrapolation).
        dropout: dropout rate used in training (attention output, MLP) (0.1).
        drop_path: stochastic-depth rate on the global attention's residual steps (0.1).
    """

    out_channels: int = 128
    in_channels: int = 512
    num_blocks: int = 16
    upsampling_depth: int = 5
    enc_kernel_size: int = 4
    num_sources: int = 2
    sample_rate: int = 16000
    num_heads: int = 8
    attention: AttentionMode = "frame"
    max_positions: int = 10000
    dropout: float = 0.1
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        positive = (
            "out_channels",
            "in_channels",
            "num_blocks",
            "enc_kernel_size",
            "num_sources",
            "sample_rate",
            "num_heads",
            "max_positions",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.upsampling_depth, int) or self.upsampling_depth < 2:
            raise ValueError(
                f"config: upsampling_depth must be an integer >= 2, got {self.upsampling_depth!r}"
            )
        for name, limit in MAX_VALUES.items():
            if getattr(self, name) > limit:
                raise ValueError(
                    f"config: {name} must be at most {limit}, got {getattr(self, name)}"
                )
        if self.max_positions * self.in_channels > MAX_POSITION_TABLE:
            raise ValueError(
                f"config: max_positions * in_channels must be at most {MAX_POSITION_TABLE}, got "
                f"{self.max_positions} * {self.in_channels}"
            )
        if self.attention not in ATTENTION_MODES:
            raise ValueError(
                f"config: attention must be one of {ATTENTION_MODES}, got {self.attention!r}"
            )
        if self.in_channels % self.num_heads:
            raise ValueError(
                f"config: in_channels ({self.in_channels}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if self.in_channels % 2:
            raise ValueError(f"config: in_channels must be even, got {self.in_channels}")
        if self.kernel_size < 4:
            raise ValueError(
                "config: enc_kernel_size * sample_rate / 1000 must be at least 4 samples, "
                f"got {self.kernel_size}"
            )
        for name in ("dropout", "drop_path"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"config: {name} must be in [0, 1), got {value!r}")

    @property
    def kernel_size(self) -> int:
        """Encoder/decoder kernel L in samples."""
        return self.enc_kernel_size * self.sample_rate // 1000

    @property
    def hop_size(self) -> int:
        """Encoder/decoder stride: a quarter of the kernel."""
        return self.kernel_size // 4

    @property
    def enc_bases(self) -> int:
        """Encoder output channels K = L // 2 + 1."""
        return self.kernel_size // 2 + 1

    @property
    def total_stride(self) -> int:
        """Samples per frame of the top (coarsest) pyramid level."""
        return self.hop_size * 2 ** (self.upsampling_depth - 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TDANetConfig:
        """Build a config; unknown keys are an error, missing keys take defaults."""
        reject_unknown_keys(cls, values)
        return cls(**values)

    def replace(self, **changes: Any) -> TDANetConfig:
        """A copy with some fields changed (unknown keys are an error)."""
        return TDANetConfig.from_dict({**self.to_dict(), **changes})


def reject_unknown_keys(cls: type, values: dict[str, Any]) -> None:
    """A ValueError naming the keys of ``values`` that are not fields of dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"config: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )


# Release checkpoints store only these keys in ``model_args``.
RELEASE_ARGS: tuple[str, ...] = (
    "out_channels",
    "in_channels",
    "num_blocks",
    "upsampling_depth",
    "enc_kernel_size",
    "num_sources",
    "sample_rate",
)

PRESETS: dict[str, TDANetConfig] = {
    # TDANetBest-4ms-LRS2: 2,353,479 parameters.
    "tdanet": TDANetConfig(enc_kernel_size=4),
    # TDANetBest-2ms-LRS2: 2,339,431 parameters.
    "tdanet-large": TDANetConfig(enc_kernel_size=2),
    # Small enough to train and run on one CPU core; used for demos and tests.
    "tdanet-small": TDANetConfig(
        out_channels=64, in_channels=128, num_blocks=8, upsampling_depth=4, enc_kernel_size=4
    ),
    # Tiny: unit tests only.
    "tdanet-tiny": TDANetConfig(
        out_channels=16, in_channels=32, num_blocks=2, upsampling_depth=3, num_heads=4
    ),
}


def get_preset(name: str) -> TDANetConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
