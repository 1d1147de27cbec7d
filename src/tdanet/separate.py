"""Separate recordings of any length: chunking, alignment, overlap-add and output scaling.

The pipeline (each step a function below, explained in ``docs/separate.md``):

1. :func:`iter_chunks` cuts the mono signal at the model's rate into chunks of ``chunk``
   samples that overlap by ``overlap`` samples, from a stream of blocks.
2. The model separates each chunk; :func:`least_squares_gains` scales its sources so that
   they sum back to the chunk's mixture in the least-squares sense (separation models
   trained with a scale-invariant loss give outputs of arbitrary level).
3. :class:`OverlapAdd` puts each chunk's sources in the order of the previous chunk's
   (:func:`best_permutation` on the overlap) and cross-fades them (:func:`crossfade`),
   so a speaker keeps its output across the whole recording.
4. :func:`tdanet.audio.peak_limit_gain` lowers all sources by one common factor if any
   would clip.

:class:`Separator` runs this on arrays (:meth:`Separator.separate`) or streams a file
through it in two passes with bounded memory (:meth:`Separator.separate_file`).
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import itertools
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soxr
import torch
from torch import nn

from . import audio
from .atomic import remove_stale_temporaries
from .errors import AudioContentError, AudioWriteError, CheckpointError
from .fast import optimize_for_inference
from .model import TDANetConfig
from .pretrained import DEFAULT_MODEL, load_model, require_tdanet
from .segments import (
    FrameEnergy,
    Segment,
    frame_energies,
    gains_at,
    pause_gains,
    speech_segments,
)
from .speakers import Features, VoiceProfiles, route_lone_voice, voice_features

# 30 s chunks: fewer borders to align and more context per call; on the test conversations
# no model changed speakers more, and whole-file SI-SNRi rose 0.3-1.2 dB over 10 s chunks
# (docs/separate.md). A full-size TDANet call on 30 s peaks near 750 MiB.
DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_OVERLAP_SECONDS = 3.0
# Ridge added to the sources' correlation matrix so near-identical sources keep finite gains.
RIDGE = 1e-4
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
# Compute precisions of the torch backend: below float32, the eager model under autocast.
PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
# Chunk alignment: overlap plus voice profiles (default, see docs/separate.md), or overlap only.
ALIGNMENTS: tuple[str, ...] = ("voices", "overlap")
# Weight of the voice profiles against the overlap at a chunk border: 1 until 2026-12-01, when
# 0.5 did no worse on any of 19 held-out conversations (docs/separate.md).
PROFILE_WEIGHT = 0.5
# Output frames handled per step in the second pass over the scratch file.
WRITE_BLOCK_FRAMES = 65_536

# One chunk's mono samples (T,) -> its separated sources (C, T), float32.
ChunkSeparator = Callable[[np.ndarray], np.ndarray]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
T = TypeVar("T")
R = TypeVar("R")


def iter_chunks(
    blocks: Iterable[np.ndarray], chunk: int, overlap: int
) -> Iterator[tuple[np.ndarray, bool]]:
    """Cut a stream of 1-D blocks into overlapping chunks: yields (samples (n,), is_last).

    Chunk ``k`` starts at ``k * (chunk - overlap)``; every chunk but the last has ``chunk``
    samples, the last has the rest (more than ``overlap`` samples unless it is the only
    chunk). Holds at most one chunk plus one block in memory. Yields nothing for an empty
    stream.
    """
    if not 0 < overlap < chunk:
        raise ValueError(f"need 0 < overlap < chunk, got overlap={overlap}, chunk={chunk}")
    hop = chunk - overlap
    buffer = np.zeros(0, np.float32)
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, np.float32)])
        # More than one chunk buffered means this chunk is not the last one.
        while buffer.shape[0] > chunk:
            yield buffer[:chunk].copy(), False
            buffer = buffer[hop:]
    if buffer.shape[0]:
        yield buffer, True


def least_squares_gains(estimates: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Gains g (C,) minimising ||mixture - sum_c g_c estimates_c||^2, lightly ridge-regularised.

    ``estimates`` is (C, T), ``mixture`` (T,). The problem is solved on unit-energy
    estimates with :data:`RIDGE` added to their correlation matrix: that keeps gains finite
    when two estimates are nearly identical, while a quiet source is not shrunk more than a
    loud one. All-zero estimates get gain 0.
    """
    est = estimates.astype(np.float64)
    norms = np.sqrt(np.einsum("ct,ct->c", est, est))
    active = norms > 0.0
    gains = np.zeros(len(est), np.float64)
    if active.any():
        unit = est[active] / norms[active, np.newaxis]
        correlation = unit @ unit.T
        rhs = unit @ mixture.astype(np.float64)
        solved = np.linalg.solve(correlation + RIDGE * np.eye(len(unit)), rhs)
        gains[active] = solved / norms[active]
    return gains.astype(np.float32)


def overlap_scores(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Inner products (C, C) of ``reference``'s and ``candidate``'s sources (both (C, n)),
    divided by their total energy so that any assignment's sum lies within [-1, 1]."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    energy = float(np.einsum("ct,ct->", ref, ref) + np.einsum("ct,ct->", cand, cand))
    return (ref @ cand.T) / max(energy, 1e-30)


def best_permutation(
    reference: np.ndarray, candidate: np.ndarray, prior: np.ndarray | None = None
) -> tuple[int, ...]:
    """Order of ``candidate``'s sources that best matches ``reference``: both (C, n).

    Returns ``p`` maximising sum_i scores[i, p[i]], where scores are the
    :func:`overlap_scores` plus ``prior`` (C, C) if given (the voice-profile similarity of
    :class:`tdanet.speakers.VoiceProfiles` times :data:`PROFILE_WEIGHT`), so ``candidate[list(p)]`` lines up with
    ``reference``. Plain inner products, not correlations: a source that is silent in the
    overlap contributes nothing, and the decision rests on the ones that are active. Ties
    keep the identity. Exhaustive over the C! orders (C is 2 or 3 in practice).
    """
    scores = overlap_scores(reference, candidate)
    if prior is not None:
        scores = scores + prior
    sources = range(scores.shape[0])
    best: tuple[int, ...] = tuple(sources)
    best_score = float(scores.trace())
    for perm in itertools.permutations(sources):
        score = float(scores[list(sources), list(perm)].sum())
        if score > best_score:
            best, best_score = perm, score
    return best


def crossfade(overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out weights (overlap,), float32, that sum to 1 at every sample.

    Raised-cosine (sin^2 / cos^2) ramps: smooth at both ends of the overlap.
    """
    fade_in = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


class OverlapAdd:
    """Join separated chunks (C, n) into one consistent stream of sources.

    Each pushed chunk is reordered to match the previous chunk on their ``overlap`` shared
    samples (:func:`best_permutation`) and cross-faded with it (:func:`crossfade`). Given
    the chunks' ``sample_rate`` (``align="voices"``), the order also weighs how much each
    output sounds like each output's voice so far (:class:`tdanet.speakers.VoiceProfiles`);
    ``align="overlap"`` decides from the overlap alone. With ``route`` (and voice
    alignment), lone voices are moved whole into their speaker's output
    (:func:`tdanet.speakers.route_lone_voice`).
    :meth:`push` returns the samples that are final: all but the last ``overlap`` of a
    chunk, or everything for the last chunk. The outputs concatenated have exactly the
    input's length.
    """

    def __init__(
        self,
        overlap: int,
        sample_rate: int | None = None,
        align: str = "voices",
        route: bool = False,
    ) -> None:
        if align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
        self.overlap = overlap
        self.sample_rate = sample_rate if align == "voices" else None
        self.route = route
        self.fade_in, self.fade_out = crossfade(overlap)
        self.tail: np.ndarray | None = None
        self.profiles: VoiceProfiles | None = None
        self.permutations: list[tuple[int, ...]] = []

    def analyse(self, sources: np.ndarray) -> Features | None:
        """The part of :meth:`push`'s work on ``sources`` (C, n) that needs no earlier chunk:
        their voice features, or None for overlap alignment. It keeps no state, so the
        workers of :func:`separate_blocks` run it beside the model call."""
        return None if self.sample_rate is None else voice_features(sources, self.sample_rate)

    def push(self, sources: np.ndarray, last: bool, analysed: Features | None = None) -> np.ndarray:
        """Add one chunk's sources (C, n) and their :meth:`analyse` result (computed here when
        not given); returns the finished samples (C, m)."""
        perm = self._order(sources, analysed)
        out = np.asarray(sources, np.float32)[list(perm)]  # a fresh copy: indexing by a list
        if self.sample_rate is not None and self.route:
            out = route_lone_voice(out, self.sample_rate, self.profiles)
        if self.tail is not None:
            self.permutations.append(perm)
            out[:, : self.overlap] = (
                self.tail * self.fade_out + out[:, : self.overlap] * self.fade_in
            )
        if last:
            self.tail = None
            return out
        if out.shape[1] < 2 * self.overlap:
            raise ValueError(f"a chunk before the last needs >= {2 * self.overlap} samples")
        self.tail = out[:, -self.overlap :].copy()
        return out[:, : -self.overlap]

    def _order(self, sources: np.ndarray, analysed: Features | None) -> tuple[int, ...]:
        """The order of a new chunk's ``sources`` (identity for the first chunk); folds the
        reordered chunk's voice features into the profiles."""
        count = len(sources)
        if self.sample_rate is None:
            if self.tail is None:
                return tuple(range(count))
            return best_permutation(self.tail, sources[:, : self.overlap])
        if analysed is None:
            analysed = voice_features(sources, self.sample_rate)
        features, weights = analysed
        if self.profiles is None:
            self.profiles = VoiceProfiles(count)
        perm: tuple[int, ...] = tuple(range(count))
        if self.tail is not None:
            prior = PROFILE_WEIGHT * self.profiles.scores(features, weights)
            perm = best_permutation(self.tail, sources[:, : self.overlap], prior)
        self.profiles.add(features[list(perm)], weights[list(perm)])
        return perm


def fork_is_safe() -> bool:
    """Whether chunk workers may be forked processes: on Linux, and only while no other
    Python thread runs (a fork copies one thread; a lock another held would never open)."""
    return sys.platform == "linux" and threading.active_count() == 1


_JOB: Callable[[Any], Any] | None = None


def _install_job(function: Callable[[Any], Any]) -> None:
    """Start of a forked worker: one torch thread, Ctrl-C left to the parent, the job kept."""
    global _JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _JOB = function


def _run_job(item: Any) -> Any:
    """In a forked worker: the installed job on one item."""
    assert _JOB is not None
    return _JOB(item)


def map_in_order(
    function: Callable[[T], R], items: Iterable[T], workers: int, processes: bool = False
) -> Iterator[R]:
    """``function`` over ``items``, results in the items' order, with up to ``workers`` calls
    running at once.

    With ``processes`` (and :func:`fork_is_safe`) the calls run in forked processes, which
    inherit ``function`` (the model included) and exchange only items and results; else in
    threads, where the fast path's Python between torch operations holds the GIL (on an idle
    2-core machine, 10 s chunks: 2 threads took 0.71x the wall time of one, 2 processes
    0.60x; docs/separate.md). At most ``workers + 1`` items are taken ahead of the results
    yielded, so memory stays bounded by ``workers + 1`` chunks. With one worker, or fewer
    than two items, it is plain ``map``.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    iterator = iter(items)
    head = list(itertools.islice(iterator, 2))
    if len(head) < 2:
        yield from map(function, head)
        return
    pool: Executor
    if processes and fork_is_safe():
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(workers, context, _install_job, (function,))
        task: Callable[[Any], Any] = _run_job
    else:
        pool, task = ThreadPoolExecutor(max_workers=workers), function
    pending: collections.deque[Future[R]] = collections.deque()
    try:
        for item in itertools.chain(head, iterator):
            pending.append(pool.submit(task, item))
            # One more than the workers in flight, so none idles while a result is used.
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def separate_blocks(
    separate_chunk: ChunkSeparator,
    blocks: Iterable[np.ndarray],
    *,
    chunk: int,
    overlap: int,
    name: str = "input",
    sample_rate: int | None = None,
    align: str = "voices",
    joiner: OverlapAdd | None = None,
    workers: int = 1,
    processes: bool = False,
) -> Iterator[np.ndarray]:
    """Separate a mono stream chunk by chunk: yields (C, m) float32 blocks of final output.

    ``blocks`` are 1-D float32 at the model's rate; the yielded blocks concatenated have the
    same total length. For an input of at most ``chunk`` samples this is one model call,
    scaled by :func:`least_squares_gains`. A chunk whose scaled output is not finite raises
    :class:`AudioContentError` naming ``name`` (and the chunk's start time, given the
    blocks' ``sample_rate``). Chunks are aligned by :class:`OverlapAdd` with ``align``
    (voice profiles need the ``sample_rate``), or by ``joiner`` if given (to read its
    profiles afterwards). ``workers`` chunks are separated at once (:func:`map_in_order`, in
    forked ``processes`` where safe); the output does not depend on either.
    """
    if joiner is None:
        joiner = OverlapAdd(overlap, sample_rate, align)

    def scaled(
        item: tuple[np.ndarray, bool],
    ) -> tuple[bool, np.ndarray, Features | None, float | None]:
        """A chunk's scaled sources and analysis; for a non-finite output, the input's peak
        instead of the analysis (a worker process sends back no more than needed)."""
        samples, last = item
        estimates = separate_chunk(samples)
        estimates = estimates * least_squares_gains(estimates, samples)[:, np.newaxis]
        if not np.isfinite(estimates).all():
            return last, estimates, None, float(np.abs(samples).max())
        return last, estimates, joiner.analyse(estimates), None

    start = 0
    for last, estimates, analysed, bad_input_peak in map_in_order(
        scaled, iter_chunks(blocks, chunk, overlap), workers, processes
    ):
        if bad_input_peak is not None:
            where = f" at {start / sample_rate:.1f} s" if sample_rate else ""
            raise AudioContentError(
                f"{name}: the model's output{where} is not finite (NaN or Inf); "
                f"input peak {bad_input_peak:.3g}: bring the input into "
                "[-1, 1] or use another model; nothing was written"
            )
        start += chunk - overlap
        yield joiner.push(estimates, last, analysed)


def output_paths(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    num_sources: int,
    audio_format: str = "wav",
) -> list[Path]:
    """``out_dir/<stem>_spk1.<audio_format>`` ... ``<stem>_spkC.<audio_format>`` for ``path``."""
    stem = Path(path).stem
    return [
        Path(out_dir) / f"{stem}_spk{index}.{audio_format}" for index in range(1, num_sources + 1)
    ]


class Separator:
    """Separate speech mixtures of any length, rate and channel count with a TDANet.

    ``model`` is a preset, bundled or hub name, a checkpoint path (with
    ``backend="onnxruntime"``: an ``.onnx`` file), or a loaded model: any callable mapping a
    float32 tensor (batch, T) to (batch, C, T) with a ``.config`` (:class:`TDANetConfig`).
    A torch module is put in eval mode, moved to ``device`` and run through
    :func:`tdanet.fast.optimize_for_inference`. Recordings are processed in chunks of ``chunk_seconds`` overlapping by
    ``overlap_seconds`` (at most half a chunk), aligned with ``align`` (:data:`ALIGNMENTS`;
    see :class:`OverlapAdd`). ``route_lone_voices`` moves a voice talking alone wholly into
    its speaker's output, and a recording that seems to hold one voice wholly into output 1
    (off by default: it can also swallow a speaker much quieter than the other).
    ``pause_gate`` lowers each output through its pauses of a second or more, where the
    model leaks the other voices (:func:`tdanet.segments.pause_gains`; on by default).
    ``workers`` chunks of a long recording are separated at once: in forked processes with
    the torch backend on a CPU where that is safe (:func:`fork_is_safe`), else in threads
    (give torch one intra-op thread then: ``torch.set_num_threads(1)``); the output is the
    same for any count.
    ``precision`` "bf16" or "fp16" runs the eager model under autocast (mainly for GPUs;
    docs/separate.md states what it costs in SI-SNR); "fp32" runs the fast path.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | nn.Module | Any = DEFAULT_MODEL,
        *,
        device: str | torch.device = "cpu",
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        backend: str = "torch",
        align: str = "voices",
        route_lone_voices: bool = False,
        pause_gate: bool = True,
        workers: int = 1,
        precision: str = "fp32",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if align not in ALIGNMENTS:
            raise ValueError(f"align must be one of {ALIGNMENTS}, got {align!r}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.align = align
        self.route_lone_voices = route_lone_voices
        self.pause_gate = pause_gate
        self.workers = workers
        # Frame energies (C, F) of the last separated recording's outputs, for speech_segments.
        self.last_energies: np.ndarray | None = None
        # Whether the last recording seemed to hold one voice (with route_lone_voices, all of
        # it is then in output 1).
        self.single_voice = False
        self.device = torch.device(device)
        self.backend = backend
        self.model, self.config = load_separation_model(
            model, backend=backend, device=self.device, precision=precision
        )
        # onnxruntime's own threads and CUDA do not survive a fork.
        self.fork_workers = backend == "torch" and self.device.type == "cpu"
        self.chunk = round(chunk_seconds * self.sample_rate)
        self.overlap = round(overlap_seconds * self.sample_rate)
        if self.chunk < self.config.kernel_size or not 0 < 2 * self.overlap <= self.chunk:
            raise ValueError(
                "need chunk_seconds of at least one encoder frame and "
                f"0 < overlap_seconds <= chunk_seconds / 2, got {chunk_seconds}, {overlap_seconds}"
            )

    @property
    def sample_rate(self) -> int:
        """The model's sample rate in Hz."""
        return self.config.sample_rate

    @property
    def num_sources(self) -> int:
        """Number of separated sources C."""
        return self.config.num_sources

    def separate_chunk(self, samples: np.ndarray) -> np.ndarray:
        """One model call: mono (T,) float32 at the model's rate -> sources (C, T) float32."""
        batch = torch.from_numpy(np.ascontiguousarray(samples, np.float32)).to(self.device)
        with torch.inference_mode():
            out = self.model(batch.unsqueeze(0))
        result = out.detach().float().cpu().numpy() if isinstance(out, torch.Tensor) else out
        return np.asarray(result, np.float32)[0]

    def separate(self, waveform: ArrayT, sample_rate: int, *, name: str = "input") -> ArrayT:
        """Separate a waveform: (samples,) or (channels, samples) -> sources (C, samples).

        Returns the type given (numpy array, or torch tensor on the input's device), float32,
        at ``sample_rate``. Several channels are downmixed (averaged) to mono first. The
        sources are scaled to sum back to the mixture (least squares, per chunk), lowered
        through their long pauses (``pause_gate``) and lowered together if any would exceed
        :data:`tdanet.audio.PEAK_LIMIT`. Raises
        :class:`AudioContentError` for empty, too short, silent or non-finite input, naming the
        waveform ``name``.
        """
        if isinstance(waveform, torch.Tensor):
            data = waveform.detach().cpu().to(torch.float32).numpy()
        else:
            data = np.asarray(waveform, dtype=np.float32)
        if data.ndim not in (1, 2):
            raise ValueError(
                f"waveform must be (samples,) or (channels, samples), got {data.shape}"
            )
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        sample_rate = int(sample_rate)
        mono = data if data.ndim == 1 else audio.downmix(data.T)
        self.check_length(name, mono.shape[0], sample_rate)
        audio.check_finite(mono, name)
        if not np.abs(mono).max() > 0:
            raise AudioContentError(
                f"{name}: is silent (all samples are zero); nothing to separate"
            )
        at_model_rate = audio.resample(mono, sample_rate, self.sample_rate)
        joiner = self._joiner()
        blocks = separate_blocks(
            self.separate_chunk,
            [at_model_rate],
            chunk=self.chunk,
            overlap=self.overlap,
            name=name,
            sample_rate=self.sample_rate,
            align=self.align,
            joiner=joiner,
            workers=self.workers,
            processes=self.fork_workers,
        )
        sources = np.concatenate(list(blocks), axis=1)
        self.single_voice = _one_voice(joiner)
        if self.single_voice and self.route_lone_voices:
            sources = merge_into_first(sources)
        self.last_energies = frame_energies(sources, self.sample_rate)
        sources = audio.fit_length(
            audio.resample(sources, self.sample_rate, sample_rate), mono.shape[0]
        )
        pauses = self._pause_gains()
        if pauses is not None:
            sources = sources * gains_at(pauses, 0, sources.shape[1], sample_rate)
        peak = float(np.abs(sources).max())
        _check_output_peak(peak, name)
        sources = sources * np.float32(audio.peak_limit_gain(peak))
        if isinstance(waveform, torch.Tensor):
            return torch.from_numpy(np.ascontiguousarray(sources)).to(waveform.device)
        return np.ascontiguousarray(sources, np.float32)

    def separate_file(
        self,
        path: str | os.PathLike[str],
        out_dir: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        subtype: str | None = None,
        audio_format: str = "wav",
        stream: int = 0,
        progress: Callable[[float], None] | None = None,
    ) -> list[Path]:
        """Separate a recording into ``out_dir/<stem>_spk1.<audio_format>`` ... ``_spkC``.

        Any format :mod:`tdanet.audio` reads (audio stream ``stream`` of a file with
        several, from 0), any rate (outputs are written back at the input's rate), any
        channel count (downmixed to mono). ``audio_format`` is one of
        :data:`tdanet.audio.OUTPUT_FORMATS`, ``subtype`` the libsndfile subtype of a WAV or
        FLAC output (16-bit PCM by default; see :func:`tdanet.audio.output_subtype`). Two
        passes with memory bounded by the chunk size. A silent file is refused before any
        model call (:func:`tdanet.audio.is_silent`); pass 1 streams the file through the
        model into a float32 scratch file in ``out_dir`` and records the output peak; pass 2
        applies :func:`tdanet.audio.peak_limit_gain` (and the pause gate) and writes the
        outputs under temporary names, renamed when all are complete. Where the header gives
        the length, pass 1 also writes the outputs as they come, and they are kept unless pass
        2 would change them (a gain below 1, lone-voice merging, or a pause to gate): pass 2 is
        then skipped. Existing outputs are refused unless ``overwrite``. Temporary outputs
        that a killed run left for these names are removed
        (:func:`tdanet.atomic.remove_stale_temporaries`). A WAV file shorter than its header
        says is separated as far as it goes, with a
        :class:`tdanet.audio.TruncatedAudioWarning`. ``progress`` is called with the seconds
        of input read so far. Returns the written paths.
        """
        reader = audio.MonoReader(path, self.sample_rate, stream=stream)
        info = reader.info
        if info.truncation is not None:
            warnings.warn(
                f"{info.truncation}; separating the frames found",
                audio.TruncatedAudioWarning,
                stacklevel=2,
            )
        if info.exact_frames:
            self.check_length(str(info.path), info.frames, info.sample_rate)
        if audio.is_silent(info):
            raise AudioContentError(
                f"{info.path}: is silent (all samples are zero); nothing to separate"
            )
        outputs = output_paths(info.path, out_dir, self.num_sources, audio_format)
        audio.check_writable(outputs, overwrite=overwrite)
        for output in outputs:
            remove_stale_temporaries(output)
        try:
            # Opened apart from the `with` below so that only its own OSError is reported so.
            scratch = tempfile.TemporaryFile(  # noqa: SIM115
                dir=Path(out_dir), prefix=".tdanet-", suffix=".f32"
            )
        except OSError as exc:
            raise AudioWriteError(
                f"{out_dir}: cannot write a scratch file ({exc.strerror})"
            ) from None
        with scratch:
            # Known length: pass 1 also writes the outputs, kept if pass 2 would change nothing.
            early = (
                audio.AtomicAudioWriter(
                    # No writing threads while chunk workers may fork.
                    outputs,
                    info.sample_rate,
                    subtype=subtype,
                    overwrite=overwrite,
                    parallel=False,
                )
                if info.exact_frames and info.truncation is None
                else None
            )
            with early or contextlib.nullcontext():
                peak = self._first_pass(reader, scratch, progress, early)
                gain = np.float32(audio.peak_limit_gain(peak))
                merge = self.single_voice and self.route_lone_voices
                pauses = self._pause_gains()
                if (
                    early is not None
                    and gain == 1.0
                    and not merge
                    and pauses is None
                    and early.frames == reader.frames
                ):
                    return outputs
                if early is not None:
                    early.discard()
            scratch.seek(0)
            written = 0
            with audio.AtomicAudioWriter(
                outputs, info.sample_rate, subtype=subtype, overwrite=overwrite
            ) as writer:
                while written < reader.frames:
                    frames = min(WRITE_BLOCK_FRAMES, reader.frames - written)
                    raw = scratch.read(frames * self.num_sources * 4)
                    block = np.frombuffer(raw, np.float32).reshape(-1, self.num_sources)
                    # Resampling can end a few samples short of the input: pad with silence.
                    block = audio.fit_length(block.T, frames).T
                    if merge:
                        block = merge_into_first(block.T).T
                    if pauses is not None:
                        block = block * gains_at(pauses, written, frames, info.sample_rate).T
                    writer.write(block * gain)
                    written += frames
        return outputs

    def _first_pass(
        self,
        reader: audio.MonoReader,
        scratch: Any,
        progress: Callable[[float], None] | None,
        early: audio.AtomicAudioWriter | None = None,
    ) -> float:
        """Separate ``reader``'s stream into ``scratch`` as float32 (frames, C) at the input's
        rate, and into ``early``, cropped or padded to the header's length, as they are;
        returns the largest absolute output sample."""
        rate = reader.info.sample_rate
        back = (
            None
            if rate == self.sample_rate
            else soxr.ResampleStream(
                self.sample_rate,
                rate,
                self.num_sources,
                dtype="float32",
                quality=audio.RESAMPLE_QUALITY,
            )
        )
        peak = 0.0
        meter = FrameEnergy(self.num_sources, self.sample_rate)
        joiner = self._joiner()
        for sources in separate_blocks(
            self.separate_chunk,
            self._checked(reader),
            chunk=self.chunk,
            overlap=self.overlap,
            name=str(reader.info.path),
            sample_rate=self.sample_rate,
            align=self.align,
            joiner=joiner,
            workers=self.workers,
            processes=self.fork_workers,
        ):
            meter.push(sources)
            block = np.ascontiguousarray(sources.T)
            if back is not None:
                block = back.resample_chunk(block, last=False)
            peak = max(peak, _write_scratch(scratch, block, reader.info.path))
            if early is not None:
                early.write(block[: max(0, reader.info.frames - early.frames)])
            if progress is not None:
                progress(reader.frames / rate)
        if back is not None:
            flush = back.resample_chunk(np.zeros((0, self.num_sources), np.float32), last=True)
            peak = max(peak, _write_scratch(scratch, flush, reader.info.path))
            if early is not None:
                early.write(flush[: max(0, reader.info.frames - early.frames)])
        if early is not None:
            # Resampling can end a few samples short of the input: pad with silence.
            missing = max(0, reader.info.frames - early.frames)
            early.write(np.zeros((missing, self.num_sources), np.float32))
        self.single_voice = _one_voice(joiner)
        energies = meter.energies()
        # Merged outputs' energies: approximately the sum (cross terms are ignored).
        merged = self.single_voice and self.route_lone_voices
        self.last_energies = merge_into_first(energies) if merged else energies
        return peak

    def _pause_gains(self) -> np.ndarray | None:
        """The pause gate's (C, F) frame gains for the last recording separated, or None when
        the gate is off or finds no pause to lower."""
        if not self.pause_gate or self.last_energies is None:
            return None
        gains = pause_gains(self.last_energies)
        return gains if bool((gains < 1.0).any()) else None

    def _joiner(self) -> OverlapAdd:
        """A fresh :class:`OverlapAdd` for one recording with this separator's settings."""
        return OverlapAdd(self.overlap, self.sample_rate, self.align, self.route_lone_voices)

    def _checked(self, reader: audio.MonoReader) -> Iterator[np.ndarray]:
        """``reader``'s blocks; for a header that only estimates its length, raises at their
        end (before the model sees the last chunk) :class:`AudioContentError` if the decoded
        stream is empty or too short (exact headers and silence are checked before)."""
        yield from reader
        if not reader.info.exact_frames:
            self.check_length(str(reader.info.path), reader.frames, reader.info.sample_rate)

    def speech_segments(self) -> list[Segment]:
        """Who speaks when in the last recording separated: (start s, end s, output index
        from 0), from its outputs (:func:`tdanet.segments.speech_segments`)."""
        if self.last_energies is None:
            raise RuntimeError("speech_segments() needs a recording separated first")
        return speech_segments(self.last_energies)

    def check_length(self, name: str, frames: int, sample_rate: int) -> None:
        """Raise :class:`AudioContentError` if ``frames`` at ``sample_rate`` is empty or
        shorter than one encoder frame of the model."""
        if frames == 0:
            raise AudioContentError(f"{name}: contains no audio samples")
        kernel = self.config.kernel_size
        if frames * self.sample_rate < kernel * sample_rate:
            raise AudioContentError(
                f"{name}: too short ({frames} samples at {sample_rate} Hz); the model needs at "
                f"least {kernel} samples at {self.sample_rate} Hz ({1000 * kernel / self.sample_rate:g} ms)"
            )


def merge_into_first(sources: np.ndarray) -> np.ndarray:
    """(C, T) sources with their sum in the first row and silence in the others."""
    merged = np.zeros_like(sources)
    merged[0] = sources.sum(axis=0)
    return merged


def _one_voice(joiner: OverlapAdd) -> bool:
    """Whether the outputs ``joiner`` aligned all sound like one voice (voice alignment only)."""
    return joiner.profiles is not None and joiner.profiles.same_voice()


def _check_output_peak(peak: float, name: str) -> None:
    """Refuse output that resampling (or anything after the per-chunk check) made non-finite."""
    if not math.isfinite(peak):
        raise AudioContentError(
            f"{name}: the separated output is not finite (NaN or Inf); bring the input into "
            "[-1, 1] or use another model; nothing was written"
        )


def _write_scratch(scratch: Any, block: np.ndarray, name: Path) -> float:
    """Append (frames, C) float32 to the scratch file; returns the block's peak (finite)."""
    if not block.size:
        return 0.0
    peak = float(np.maximum(block.max(), -block.min()))  # NaN if any sample is NaN
    _check_output_peak(peak, str(name))
    try:
        scratch.write(np.ascontiguousarray(block, np.float32).data)
    except OSError as exc:
        raise AudioWriteError(f"{name}: cannot write the scratch file ({exc.strerror})") from None
    return peak


def load_separation_model(
    model: str | os.PathLike[str] | nn.Module | Any,
    *,
    backend: str,
    device: torch.device,
    precision: str = "fp32",
) -> tuple[Callable[[torch.Tensor], Any], TDANetConfig]:
    """The callable (batch, T) -> (batch, C, T) a :class:`Separator` runs, and its config.

    Names and paths load with :func:`tdanet.pretrained.load_model` (``torch``) or
    ``tdanet.export.OnnxModel`` (``onnxruntime``, ``.onnx`` files); torch modules go
    through :func:`tdanet.fast.optimize_for_inference` in float32, or run eagerly under
    autocast in a lower ``precision`` (:data:`PRECISIONS`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "fp32" and backend != "torch":
        raise ValueError(f"precision {precision} needs the torch backend")
    if isinstance(model, (str, os.PathLike)):
        model = (
            _load_onnx(Path(model))
            if backend == "onnxruntime"
            else require_tdanet(load_model(model), "offline separation")
        )
    config = getattr(model, "config", None)
    if not isinstance(config, TDANetConfig):
        raise TypeError("the model must have a .config attribute holding a TDANetConfig")
    if isinstance(model, nn.Module) and precision != "fp32":
        return autocast_call(model.eval().to(device), device, PRECISIONS[precision]), config
    if isinstance(model, nn.Module):
        return optimize_for_inference(model.eval().to(device)), config
    if not callable(model):
        raise TypeError(f"the model must be callable, got {type(model).__name__}")
    return model, config


def autocast_call(
    module: nn.Module, device: torch.device, dtype: torch.dtype
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module`` run under autocast to ``dtype``: (batch, T) -> float32 (batch, C, T)."""

    def call(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return module(batch).float()

    return call


def _load_onnx(path: Path) -> Any:
    """Load an exported ``.onnx`` model with ``tdanet.export.OnnxModel``."""
    if path.suffix.lower() != ".onnx":
        raise CheckpointError(
            f"{path}: the onnxruntime backend needs an .onnx file (see `tdanet export`)"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        # Imported by name: the export module is optional and pulls in onnxruntime.
        onnx_model = importlib.import_module("tdanet.export").OnnxModel
    except (ImportError, AttributeError):
        raise CheckpointError(
            f"{path}: the onnxruntime backend is not available in this installation "
            "(tdanet.export.OnnxModel is missing); use --backend torch"
        ) from None
    return onnx_model(path)
