"""Real-time separation with a causal model: feed blocks of any size, get sources back.

:class:`StreamingSeparator` wraps a :class:`~tdanet.model.tfacm.TFACM` and carries all of
its state between calls: the input samples not yet framed (the STFT overlap), the network's
:class:`~tdanet.model.tfacm.TFACMState` (LSTM states, cache memory, attention keys and
values, convolution histories) and the overlap-add tail of the output. Each call returns
every output sample that no future input can change any more; output sample n leaves once
input sample n + ``latency_samples`` - 1 has arrived, whatever the block sizes. The
concatenated output of all calls and :meth:`StreamingSeparator.flush` equals the offline
``model(mixture)`` on the same signal (up to float rounding), so the speaker order is the
model's and never changes between blocks.
"""

from __future__ import annotations

import torch

from .model.tfacm import TFACM, overlap_add


class StreamingSeparator:
    """Causal streaming separation of ``batch`` parallel streams with a TFACM.

    ``process(block)`` takes (batch, n) or (n,) float samples at the model's rate (n >= 0,
    any size) and returns (batch, C, m) new output samples; ``flush()`` returns the rest,
    so that the outputs total exactly the input's length. ``reset()`` starts a new stream.
    """

    def __init__(self, model: TFACM, batch: int = 1) -> None:
        if not isinstance(model, TFACM):
            raise TypeError(
                f"streaming needs a causal TFACM model, got {type(model).__name__}; "
                "TDANet looks at the whole recording and cannot stream"
            )
        self.model = model.eval()
        self.batch = batch
        self.reset()

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    @property
    def num_sources(self) -> int:
        return self.model.config.num_sources

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency in samples: one STFT window."""
        return self.model.config.latency_samples

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    def reset(self) -> None:
        """Forget everything: the next sample starts a new stream."""
        config = self.model.config
        device = self.model.window.device
        overlap = config.win_length - config.hop_length
        self.state = self.model.initial_state(self.batch, device)
        # Framing starts win - hop zeros before the first sample, as in the offline forward.
        self._pending = torch.zeros(self.batch, overlap, device=device)
        self._tail = torch.zeros(self.batch, config.num_sources, overlap, device=device)
        self._envelope_tail = torch.zeros(overlap, device=device)
        self._to_skip = overlap
        self.received = 0
        self.emitted = 0
        self._flushed = False

    @torch.no_grad()
    def process(self, block: torch.Tensor) -> torch.Tensor:
        """Add (batch, n) or (n,) input samples; return (batch, C, m) finished output samples."""
        if self._flushed:
            raise RuntimeError("the stream was flushed; call reset() to start a new one")
        if block.dim() == 1:
            block = block.unsqueeze(0)
        if block.dim() != 2 or block.shape[0] != self.batch:
            raise ValueError(
                f"expected a ({self.batch}, samples) block, got shape {tuple(block.shape)}"
            )
        self.received += block.shape[1]
        return self._run(block.to(self._pending))

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """End the stream: (batch, C, m) last samples, so the outputs total the input length."""
        config = self.model.config
        overlap = config.win_length - config.hop_length
        needed = -(-(self.received + overlap) // config.hop_length)
        waiting = self._pending.shape[1] - overlap
        zeros = (needed - self.state.frames) * config.hop_length - waiting
        out = self._run(self._pending.new_zeros(self.batch, max(zeros, 0)))
        out = out[..., : self.received - self.emitted + out.shape[-1]]
        self.emitted = self.received
        self._flushed = True
        return out

    def _run(self, block: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        win, hop = config.win_length, config.hop_length
        pending = torch.cat([self._pending, block], dim=1)
        count = (pending.shape[1] - (win - hop)) // hop
        if count < 1:
            self._pending = pending
            return pending.new_zeros(self.batch, config.num_sources, 0)
        frames = pending[:, : (count - 1) * hop + win].unfold(-1, win, hop)  # (B, n, win)
        self._pending = pending[:, count * hop :]
        model = self.model
        sources = model.synthesis(model.separate_frames(model.analysis(frames), self.state))
        signal = overlap_add(sources, hop)
        signal[..., : win - hop] += self._tail
        envelope = overlap_add((model.window**2).expand(count, -1), hop)
        envelope[: win - hop] += self._envelope_tail
        ready = count * hop
        self._tail = signal[..., ready:]
        self._envelope_tail = envelope[ready:]
        out = signal[..., :ready] / envelope[:ready]
        skip = min(self._to_skip, ready)
        self._to_skip -= skip
        out = out[..., skip:]
        self.emitted += out.shape[-1]
        return out
