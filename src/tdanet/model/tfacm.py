"""TFACM: the causal time-frequency attention cache memory separator (imports only torch).

Chen, Li, Yang, Hu, "Time-Frequency-Based Attention Cache Memory Model for Real-Time
Speech Separation", 2025 (arXiv 2505.13094). Pipeline (paper symbols in <>):

    mixture y -> causal STFT <E in R^(2 x F x T)> -> CConv2d + LN <G in R^(N x F x T)>
      -> B blocks of [F-Local, T-Local with cache memory (CM), causal attention refinement
         (CAR) + gated feed-forward] -> causal Conv2d to C complex spectra -> iSTFT.

Every layer is causal in frames: output frame t depends only on input frames <= t, so an
output sample depends on input samples up to one STFT window later (``latency_samples``).
The network runs on a chunk of frames with an explicit :class:`TFACMState`; the offline
``forward`` is one chunk with a fresh state, and :mod:`tdanet.streaming` feeds the same code
chunk by chunk, so streamed and offline outputs agree by construction. Choices the paper
leaves open are listed in docs/architecture.md ("TFACM").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import reject_unknown_keys
from .tdanet import as_batch

FAMILY = "tfacm"
# CConv2d of the encoder and the output convolution: 3 frames x 3 bins (TF-GridNet's size).
CONV_FRAMES = 3
CONV_BINS = 3


@dataclass(frozen=True)
class TFACMConfig:
    """Every hyper-parameter of a TFACM (names follow the paper's symbols where it has one).

    Attributes:
        num_sources: separated sources <C> (2).
        sample_rate: sample rate in Hz the model was trained for.
        win_length: STFT window in samples (n_fft); also the algorithmic latency.
        hop_length: STFT hop in samples; win_length must be a multiple of it, at least 2x.
        emb_dim: embedding width <N> of G.
        num_blocks: TFACM blocks <B>.
        hidden: LSTM hidden units <H> (LSTM-F, LSTM-T and the cache memory).
        emb_kernel: sub-band unfold kernel <W1> (frequency) and the kernel of the causal
            transposed convolutions (frequency in F-Local, time in T-Local).
        emb_stride: sub-band unfold stride <S1>.
        segment_frames: frames per T-Local segment whose final LSTM state the cache memory
            stores (the authors' release uses 70).
        num_heads: heads of the causal attention refinement.
        qk_dim: approximate per-frame query/key width; each head uses
            E = ceil(qk_dim / F) channels per bin.
        attention_context: frames of history each frame may attend to, itself included;
            0 attends to every past frame (the paper), a positive value bounds the streaming
            cost and memory.
        eps: epsilon of the layer norms.
        dropout: dropout of the gated feed-forward (training only).
    """

    num_sources: int = 2
    sample_rate: int = 8000
    win_length: int = 64
    hop_length: int = 8
    emb_dim: int = 64
    num_blocks: int = 3
    hidden: int = 64
    emb_kernel: int = 8
    emb_stride: int = 1
    segment_frames: int = 70
    num_heads: int = 2
    qk_dim: int = 128
    attention_context: int = 0
    eps: float = 1e-5
    dropout: float = 0.1

    def __post_init__(self) -> None:
        positive = (
            "num_sources",
            "sample_rate",
            "win_length",
            "hop_length",
            "emb_dim",
            "num_blocks",
            "hidden",
            "emb_kernel",
            "emb_stride",
            "segment_frames",
            "num_heads",
            "qk_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")
        context = self.attention_context
        if not isinstance(context, int) or isinstance(context, bool) or context < 0:
            raise ValueError(f"config: attention_context must be an integer >= 0, got {context!r}")
        if self.win_length % 2:
            raise ValueError(f"config: win_length must be even, got {self.win_length}")
        if self.win_length % self.hop_length or self.win_length < 2 * self.hop_length:
            raise ValueError(
                f"config: win_length ({self.win_length}) must be a multiple of hop_length "
                f"({self.hop_length}) and at least twice it"
            )
        if self.emb_dim % self.num_heads:
            raise ValueError(
                f"config: emb_dim ({self.emb_dim}) must be divisible by num_heads "
                f"({self.num_heads})"
            )
        if self.emb_kernel > self.n_freqs:
            raise ValueError(
                f"config: emb_kernel ({self.emb_kernel}) must be at most the "
                f"{self.n_freqs} frequency bins"
            )
        if not float(self.eps) > 0.0:
            raise ValueError(f"config: eps must be positive, got {self.eps!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"config: dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def family(self) -> str:
        return FAMILY

    @property
    def n_freqs(self) -> int:
        """Frequency bins F = win_length // 2 + 1."""
        return self.win_length // 2 + 1

    @property
    def padded_freqs(self) -> int:
        """F padded so that the <W1, S1> unfold covers every bin."""
        steps = math.ceil((self.n_freqs - self.emb_kernel) / self.emb_stride)
        return steps * self.emb_stride + self.emb_kernel

    @property
    def num_subbands(self) -> int:
        """Sub-bands <L_F> = (F - W1) / S1 + 1, F padded."""
        return (self.padded_freqs - self.emb_kernel) // self.emb_stride + 1

    @property
    def qk_channels(self) -> int:
        """Per-bin query/key channels E of one attention head."""
        return math.ceil(self.qk_dim / self.n_freqs)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: output sample n needs input samples up to n + win_length - 1."""
        return self.win_length

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``family``, so that a checkpoint's config names its model family."""
        return {"family": FAMILY, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TFACMConfig:
        """Build a config; unknown keys are an error, missing keys take defaults."""
        values = dict(values)
        family = values.pop("family", FAMILY)
        if family != FAMILY:
            raise ValueError(f"config: family is {family!r}, expected {FAMILY!r}")
        reject_unknown_keys(cls, values)
        return cls(**values)

    def replace(self, **changes: Any) -> TFACMConfig:
        """A copy with some fields changed (unknown keys are an error)."""
        return TFACMConfig.from_dict({**self.to_dict(), **changes})


TFACM_PRESETS: dict[str, TFACMConfig] = {
    # The authors' LibriMix configuration (8 kHz, 8 ms window, 1 ms hop, N=64, B=3, H=64).
    "tfacm": TFACMConfig(),
    # 16 kHz, 16 ms window / 8 ms hop, 1 s of attention history: streams on one CPU core.
    "tfacm-small": TFACMConfig(
        sample_rate=16000,
        win_length=256,
        hop_length=128,
        emb_dim=32,
        num_blocks=2,
        hidden=32,
        emb_kernel=4,
        emb_stride=2,
        segment_frames=25,
        num_heads=2,
        qk_dim=128,
        attention_context=125,
    ),
    # Tiny: unit tests only.
    "tfacm-tiny": TFACMConfig(
        win_length=32,
        hop_length=8,
        emb_dim=8,
        num_blocks=2,
        hidden=8,
        emb_kernel=4,
        emb_stride=2,
        segment_frames=5,
        num_heads=2,
        qk_dim=16,
        attention_context=7,
    ),
}


Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class BlockState:
    """What one TFACM block carries from one chunk of frames to the next."""

    lstm: Pair  # running LSTM-T state (1, B*F, H)
    inits: list[Pair]  # cache-memory initial states queued for the next segments
    deconv: torch.Tensor  # last W1 - 1 LSTM-T outputs (B*F, H, W1 - 1)
    keys: torch.Tensor  # attention history (B, heads, P, E*F)
    values: torch.Tensor  # (B, heads, P, N/heads*F)


@dataclass
class TFACMState:
    """Everything the network carries between chunks: start with :meth:`TFACM.initial_state`."""

    frames: int  # frames processed so far
    conv_in: torch.Tensor  # last CONV_FRAMES - 1 input spectra (B, 2, 2, F)
    conv_out: torch.Tensor  # last CONV_FRAMES - 1 block outputs (B, N, 2, F)
    blocks: list[BlockState]
    memory: list[tuple[Pair, Pair]] = field(default_factory=list)  # cache memory per block link


def _channel_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """Layer norm over the channels of each T-F bin: (B, N, T, F) -> (B, N, T, F)."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps)
    return y.permute(0, 3, 1, 2)


class ChannelNorm(nn.Module):
    """LN over channels per T-F bin (the paper's LN): (B, N, T, F) -> (B, N, T, F)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channel_norm(x, self.weight, self.bias, self.eps)


class FrameNorm(nn.Module):
    """LN over (channels, bins) of each frame and group: (B, G, C, T, F) -> same shape."""

    def __init__(self, groups: int, channels: int, freqs: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(groups, channels, 1, freqs))
        self.bias = nn.Parameter(torch.zeros(groups, channels, 1, freqs))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.transpose(2, 3), x.shape[2:3] + x.shape[4:], eps=self.eps)
        return y.transpose(2, 3) * self.weight + self.bias


class CausalConv2d(nn.Module):
    """Conv2d causal in time (CConv2d), same-padded in frequency.

    ``forward(x (B, Cin, n, F), history (B, Cin, k - 1, F))`` returns the output
    (B, Cout, n, F) and the new history (the last k - 1 input frames).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, (CONV_FRAMES, CONV_BINS), padding=(0, CONV_BINS // 2)
        )

    def forward(self, x: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([history, x], dim=2)
        return self.conv(full), full[:, :, full.shape[2] - (CONV_FRAMES - 1) :]


class FLocal(nn.Module):
    """F-Local: LN, sub-band unfold <W1, S1>, LSTM-F over sub-bands, transposed conv, residual.

    Works within each frame, so it needs no state: (B, N, n, F) -> (B, N, n, F).
    """

    def __init__(self, config: TFACMConfig) -> None:
        super().__init__()
        self.config = config
        n, k = config.emb_dim, config.emb_kernel
        self.norm = ChannelNorm(n, config.eps)
        self.lstm = nn.LSTM(n * k, config.hidden, batch_first=True)
        self.deconv = nn.ConvTranspose1d(config.hidden, n, k, stride=config.emb_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        batch, channels, frames, freqs = x.shape
        y = self.norm(x).transpose(1, 2).reshape(batch * frames, channels, freqs)
        y = F.pad(y, (0, c.padded_freqs - freqs))
        # (B*n, N*W1, L_F): each column is one sub-band of W1 neighbouring bins.
        y = F.unfold(y.unsqueeze(-1), (c.emb_kernel, 1), stride=(c.emb_stride, 1))
        y, _ = self.lstm(y.transpose(1, 2))  # (B*n, L_F, H)
        y = self.deconv(y.transpose(1, 2))[..., :freqs]  # (B*n, N, F)
        y = y.reshape(batch, frames, channels, freqs).transpose(1, 2)
        return x + y


class CacheMemory(nn.Module):
    """CM: turns the final LSTM-T states of a block's segments into the next block's initial ones.

    For segment s of block b + 1 the initial state is ``m(s - 1)``, where m runs an LSTM over
    the segment-final states of block b (one step per segment, separately for h and c),
    projects it and adds it back: m = x + LN(W LSTM(x)). Segment 0 starts from zeros.
    ``forward(finals, state)`` maps m segment finals [(h, c) each (1, B*F, H)] to m initial
    states, carrying the two LSTMs' states.
    """

    def __init__(self, config: TFACMConfig) -> None:
        super().__init__()
        hidden = config.hidden
        self.h_lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.c_lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.h_proj = nn.Linear(hidden, hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.h_norm = nn.LayerNorm(hidden, eps=config.eps)
        self.c_norm = nn.LayerNorm(hidden, eps=config.eps)

    def forward(
        self, finals: list[Pair], state: tuple[Pair, Pair]
    ) -> tuple[list[Pair], tuple[Pair, Pair]]:
        if not finals:
            return [], state
        h = torch.cat([pair[0] for pair in finals], dim=0).transpose(0, 1)  # (B*F, m, H)
        c = torch.cat([pair[1] for pair in finals], dim=0).transpose(0, 1)
        h_out, h_state = self.h_lstm(h, state[0])
        c_out, c_state = self.c_lstm(c, state[1])
        h = h + self.h_norm(self.h_proj(h_out))
        c = c + self.c_norm(self.c_proj(c_out))
        inits = [
            (h[:, i].unsqueeze(0).contiguous(), c[:, i].unsqueeze(0).contiguous())
            for i in range(h.shape[1])
        ]
        return inits, (h_state, c_state)


class TLocal(nn.Module):
    """T-Local: LN, LSTM-T over each bin's frames in segments, causal transposed conv, residual.

    The LSTM restarts at every segment of ``segment_frames`` frames from the state the cache
    memory gives (zeros in the first block), so the memory, not one endless recurrence,
    carries the history. ``forward(x (B, N, n, F), state)`` returns (B, N, n, F) and the
    final (h, c) of each segment completed in this chunk.
    """

    def __init__(self, config: TFACMConfig) -> None:
        super().__init__()
        self.config = config
        self.norm = ChannelNorm(config.emb_dim, config.eps)
        self.lstm = nn.LSTM(config.emb_dim, config.hidden, batch_first=True)
        # A stride-1 transposed conv causal in time is a causal conv: out[t] = sum_j W_j h[t-j].
        self.deconv = nn.Conv1d(config.hidden, config.emb_dim, config.emb_kernel)

    def forward(
        self, x: torch.Tensor, state: BlockState, start: int
    ) -> tuple[torch.Tensor, list[Pair]]:
        batch, channels, frames, freqs = x.shape
        seq = self.norm(x).permute(0, 3, 2, 1).reshape(batch * freqs, frames, channels)
        out, finals = self._segments(seq, state, start)  # (B*F, n, H)
        full = torch.cat([state.deconv, out.transpose(1, 2)], dim=2)
        state.deconv = full[:, :, full.shape[2] - (self.config.emb_kernel - 1) :]
        y = self.deconv(full)  # (B*F, N, n)
        y = y.reshape(batch, freqs, channels, frames).permute(0, 2, 3, 1)
        return x + y, finals

    def _segments(
        self, seq: torch.Tensor, state: BlockState, start: int
    ) -> tuple[torch.Tensor, list[Pair]]:
        """Run LSTM-T over (B*F, n, N) frames starting at absolute frame ``start``."""
        size = self.config.segment_frames
        outputs: list[torch.Tensor] = []
        finals: list[Pair] = []
        done, total = 0, seq.shape[1]
        while done < total:
            position = start + done
            offset = position % size
            if offset == 0:
                full = (total - done) // size
                if full >= 2:
                    out, ends = self._full_segments(seq[:, done : done + full * size], state, full)
                    outputs.append(out)
                    finals.extend(ends)
                    state.lstm = ends[-1]
                    done += full * size
                    continue
                state.lstm = state.inits.pop(0)
            length = min(size - offset, total - done)
            out, (h, c) = self.lstm(seq[:, done : done + length], state.lstm)
            outputs.append(out)
            state.lstm = (h, c)
            if offset + length == size:
                finals.append((h, c))
            done += length
        return torch.cat(outputs, dim=1), finals

    def _full_segments(
        self, seq: torch.Tensor, state: BlockState, count: int
    ) -> tuple[torch.Tensor, list[Pair]]:
        """``count`` whole segments (B*F, count*K, N) as one batch of (count*B*F, K, N)."""
        rows, _, channels = seq.shape
        size = self.config.segment_frames
        starts = [state.inits.pop(0) for _ in range(count)]
        h0 = torch.cat([pair[0] for pair in starts], dim=1)  # (1, count*B*F, H)
        c0 = torch.cat([pair[1] for pair in starts], dim=1)
        batched = seq.reshape(rows, count, size, channels).transpose(0, 1)
        out, (h, c) = self.lstm(batched.reshape(count * rows, size, channels), (h0, c0))
        out = out.reshape(count, rows, size, -1).transpose(0, 1).reshape(rows, count * size, -1)
        ends = list(zip(h.split(rows, dim=1), c.split(rows, dim=1), strict=True))
        return out, ends


class CausalAttention(nn.Module):
    """CAR: multi-head attention across frames, causal (and optionally windowed), full-band.

    Queries and keys of a frame are E x F maps (1x1 conv, PReLU, LN over the frame), values
    N/heads x F maps; frame t attends to frames t - context < u <= t. ``forward(x (B, N, n,
    F), state, start)`` returns (B, N, n, F) and keeps the needed keys and values in
    ``state``.
    """

    def __init__(self, config: TFACMConfig) -> None:
        super().__init__()
        self.config = config
        heads, n, e, freqs = config.num_heads, config.emb_dim, config.qk_channels, config.n_freqs
        self.query = nn.Conv2d(n, heads * e, 1)
        self.key = nn.Conv2d(n, heads * e, 1)
        self.value = nn.Conv2d(n, n, 1)
        self.query_act = nn.PReLU(heads)
        self.key_act = nn.PReLU(heads)
        self.value_act = nn.PReLU(heads)
        self.query_norm = FrameNorm(heads, e, freqs, config.eps)
        self.key_norm = FrameNorm(heads, e, freqs, config.eps)
        self.value_norm = FrameNorm(heads, n // heads, freqs, config.eps)
        self.proj = nn.Conv2d(n, n, 1)
        self.proj_act = nn.PReLU()
        self.proj_norm = FrameNorm(1, n, freqs, config.eps)

    def _heads(
        self, x: torch.Tensor, conv: nn.Module, act: nn.PReLU, norm: FrameNorm
    ) -> torch.Tensor:
        """(B, N, n, F) -> (B, heads, n, D*F) through conv, per-head PReLU and frame LN."""
        heads = self.config.num_heads
        y = conv(x)
        batch, channels, frames, freqs = y.shape
        y = y.reshape(batch, heads, channels // heads, frames, freqs)
        y = norm(act(y))
        return y.transpose(2, 3).reshape(batch, heads, frames, -1)

    def forward(self, x: torch.Tensor, state: BlockState, start: int) -> torch.Tensor:
        c = self.config
        batch, channels, frames, freqs = x.shape
        q = self._heads(x, self.query, self.query_act, self.query_norm)
        k = torch.cat([state.keys, self._heads(x, self.key, self.key_act, self.key_norm)], dim=2)
        v = torch.cat(
            [state.values, self._heads(x, self.value, self.value_act, self.value_norm)], dim=2
        )
        past = k.shape[2] - frames
        query_at = torch.arange(frames, device=x.device).unsqueeze(1) + past
        key_at = torch.arange(k.shape[2], device=x.device).unsqueeze(0)
        allowed = key_at <= query_at
        if c.attention_context:
            allowed &= query_at - key_at < c.attention_context
        scores = q @ k.transpose(2, 3) / math.sqrt(q.shape[-1])  # (B, heads, n, P + n)
        scores = scores.masked_fill(~allowed, float("-inf"))
        y = scores.softmax(dim=-1) @ v  # (B, heads, n, N/heads*F)
        # A later frame attends at most attention_context - 1 frames back.
        drop = max(0, k.shape[2] - c.attention_context + 1) if c.attention_context else 0
        state.keys, state.values = k[:, :, drop:], v[:, :, drop:]
        y = y.reshape(batch, c.num_heads, frames, channels // c.num_heads, freqs)
        y = y.transpose(2, 3).reshape(batch, channels, frames, freqs)
        y = self.proj_act(self.proj(y)).unsqueeze(1)
        return x + self.proj_norm(y).squeeze(1)


class GatedFeedForward(nn.Module):
    """Pointwise gated feed-forward after CAR: x + W_o(W_l x * PReLU(W_r x)); (B,N,n,F) -> same."""

    def __init__(self, config: TFACMConfig) -> None:
        super().__init__()
        n = config.emb_dim
        self.left = nn.Conv2d(n, n, 1)
        self.right = nn.Conv2d(n, n, 1)
        self.act = nn.PReLU()
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Conv2d(n, n, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.dropout(self.left(x) * self.act(self.right(x))))


class TFACMBlock(nn.Module):
    """One separator block: F-Local, T-Local (with CM input), CAR, gated feed-forward.

    ``forward(x (B, N, n, F), state, start)`` -> ((B, N, n, F), finals of its segments).
    """

    def __init__(self, config: TFACMConfig) -> None:
        super().__init__()
        self.f_local = FLocal(config)
        self.t_local = TLocal(config)
        self.attention = CausalAttention(config)
        self.feed_forward = GatedFeedForward(config)

    def forward(
        self, x: torch.Tensor, state: BlockState, start: int
    ) -> tuple[torch.Tensor, list[Pair]]:
        x = self.f_local(x)
        x, finals = self.t_local(x, state, start)
        x = self.attention(x, state, start)
        return self.feed_forward(x), finals


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add (..., n, win) frames at ``hop`` -> (..., (n - 1) * hop + win)."""
    *lead, count, win = frames.shape
    flat = frames.reshape(-1, count, win).transpose(1, 2)  # (X, win, n)
    out = F.fold(flat, (1, (count - 1) * hop + win), (1, win), stride=(1, hop))
    return out.reshape(*lead, -1)


class TFACM(nn.Module):
    """The TFACM separator: (batch, samples) or (samples,) mixture -> (batch, C, samples).

    Attributes:
        config: the :class:`TFACMConfig`.
        window: the sqrt-Hann analysis and synthesis window (win_length,).
    """

    window: torch.Tensor

    def __init__(self, config: TFACMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or TFACMConfig()
        # sqrt-Hann analysis and synthesis: their product, a Hann window, overlap-adds flat.
        window = torch.hann_window(config.win_length, periodic=True).sqrt()
        self.register_buffer("window", window, persistent=False)
        self.encoder = CausalConv2d(2, config.emb_dim)
        self.encoder_norm = ChannelNorm(config.emb_dim, config.eps)
        self.blocks = nn.ModuleList(TFACMBlock(config) for _ in range(config.num_blocks))
        self.memory = CacheMemory(config)  # shared by every block link, as in the release
        self.decoder = CausalConv2d(config.emb_dim, 2 * config.num_sources)

    @property
    def num_sources(self) -> int:
        return self.config.num_sources

    def initial_state(
        self, batch: int = 1, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> TFACMState:
        """The state before the first frame: zero histories, empty caches."""
        c = self.config
        options: dict[str, Any] = {
            "device": device or self.window.device,
            "dtype": dtype or torch.float32,
        }
        freqs, rows = c.n_freqs, batch * c.n_freqs

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, **options)

        def pair() -> Pair:
            return zeros(1, rows, c.hidden), zeros(1, rows, c.hidden)

        blocks = []
        for index in range(c.num_blocks):
            blocks.append(
                BlockState(
                    lstm=pair(),
                    # Segment 0 of a later block has no predecessor; the first block's
                    # segments all start from zeros (queued in separate_frames).
                    inits=[pair()] if index else [],
                    deconv=zeros(rows, c.hidden, c.emb_kernel - 1),
                    keys=zeros(batch, c.num_heads, 0, c.qk_channels * freqs),
                    values=zeros(batch, c.num_heads, 0, c.emb_dim // c.num_heads * freqs),
                )
            )
        return TFACMState(
            frames=0,
            conv_in=zeros(batch, 2, CONV_FRAMES - 1, freqs),
            conv_out=zeros(batch, c.emb_dim, CONV_FRAMES - 1, freqs),
            blocks=blocks,
            memory=[(pair(), pair()) for _ in range(c.num_blocks - 1)],
        )

    def analysis(self, frames: torch.Tensor) -> torch.Tensor:
        """Causal STFT of framed audio: (B, n, win) -> real/imag features (B, 2, n, F)."""
        spectrum = torch.fft.rfft(frames * self.window, dim=-1)
        return torch.stack([spectrum.real, spectrum.imag], dim=1)

    def synthesis(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, 2, n, F) source spectra -> windowed frames (B, C, n, win) for overlap-add."""
        spectrum = torch.complex(features[:, :, 0], features[:, :, 1])
        return torch.fft.irfft(spectrum, n=self.config.win_length, dim=-1) * self.window

    def separate_frames(self, features: torch.Tensor, state: TFACMState) -> torch.Tensor:
        """The separator on n new frames: (B, 2, n, F) -> (B, C, 2, n, F); updates ``state``."""
        c = self.config
        batch, _, frames, freqs = features.shape
        start = state.frames
        # Segments the first block reaches in this chunk start from zeros.
        first = state.blocks[0]
        crossings = (start + frames - 1) // c.segment_frames - (start - 1) // c.segment_frames
        zero = torch.zeros_like(first.lstm[0])
        first.inits.extend((zero, zero) for _ in range(crossings))
        x, state.conv_in = self.encoder(features, state.conv_in)
        x = self.encoder_norm(x)
        for index, block in enumerate(self.blocks):
            x, finals = block(x, state.blocks[index], start)
            if index + 1 < c.num_blocks:
                inits, state.memory[index] = self.memory(finals, state.memory[index])
                state.blocks[index + 1].inits.extend(inits)
        y, state.conv_out = self.decoder(x, state.conv_out)
        state.frames = start + frames
        return y.reshape(batch, c.num_sources, 2, frames, freqs)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Separate (batch, L) or (L,) -> (batch, C, L), causally.

        The signal is framed with ``win - hop`` zeros in front and enough zeros behind that
        every output sample is covered by all its frames; output sample n depends only on
        input samples < n + win_length.
        """
        waveform = as_batch(waveform, "TFACM")
        c = self.config
        batch, length = waveform.shape
        lead = c.win_length - c.hop_length
        count = -(-(length + lead) // c.hop_length)
        padded = F.pad(waveform, (lead, count * c.hop_length - length))
        frames = padded.unfold(-1, c.win_length, c.hop_length)  # (B, n, win)
        state = self.initial_state(batch, waveform.device, waveform.dtype)
        sources = self.synthesis(self.separate_frames(self.analysis(frames), state))
        signal = overlap_add(sources, c.hop_length)
        envelope = overlap_add((self.window**2).expand(count, -1), c.hop_length)
        # Crop before dividing: the envelope is zero at the very start, and 0/0 there would
        # make NaN gradients even though those samples are dropped.
        return signal[..., lead : lead + length] / envelope[..., lead : lead + length]
