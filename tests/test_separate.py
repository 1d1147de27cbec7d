from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tdanet import PRESETS, Separator, audio, load_model
from tdanet.errors import AudioContentError, AudioWriteError, CheckpointError
from tdanet.separate import (
    OverlapAdd,
    best_permutation,
    crossfade,
    iter_chunks,
    least_squares_gains,
    output_paths,
    separate_blocks,
)

from .conftest import randomize_

RATE = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


class OracleModel:
    """A perfect separator that is honest about chunking: for the chunk it is given it
    returns the true sources of that stretch of the mixture, in a fresh random order and at
    a fresh random level per call, as a real model would (no memory across chunks)."""

    def __init__(self, sources: np.ndarray, seed: int = 0) -> None:
        self.sources = sources.astype(np.float32)
        self.mixture = self.sources.sum(axis=0)
        self.config = PRESETS["tdanet-tiny"].replace(num_sources=len(sources))
        self.rng = np.random.default_rng(seed)
        self.orders: list[tuple[int, ...]] = []

    def locate(self, chunk: np.ndarray) -> int:
        for start in np.flatnonzero(self.mixture == chunk[0]):
            if np.array_equal(self.mixture[start : start + len(chunk)], chunk):
                return int(start)
        raise AssertionError("chunk is not a stretch of the mixture")

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        chunk = batch[0].numpy()
        start = self.locate(chunk)
        order = self.rng.permutation(len(self.sources))
        gains = self.rng.uniform(0.2, 5.0, len(self.sources))[:, np.newaxis]
        self.orders.append(tuple(int(i) for i in order))
        out = self.sources[order, start : start + len(chunk)] * gains
        return torch.from_numpy(out[np.newaxis].astype(np.float32))


def swapping_sources(seconds: float = 6.0) -> np.ndarray:
    """Two sources that swap loudness (20 dB each way) and each fall silent for a while.

    Source 2 is silent from 2.0 s to 3.2 s and source 1 from 4.4 s to 5.1 s, which covers
    whole chunk overlaps for 1 s chunks with 0.25 s overlap.
    """
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    ramp = t / seconds
    voiced = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 330 * t + 0.3)
    noise = np.convolve(rng.standard_normal(t.size), np.ones(8) / 8, mode="same")
    s1 = 0.3 * voiced * (1.0 - 0.9 * ramp) * ~((t >= 4.4) & (t < 5.1))
    s2 = 0.6 * noise * (0.1 + 0.9 * ramp) * ~((t >= 2.0) & (t < 3.2))
    return np.stack([s1, s2]).astype(np.float32)


def match_error(estimates: np.ndarray, truth: np.ndarray) -> float:
    """Largest absolute error under the best single (global) ordering of the estimates."""
    return min(
        float(np.abs(estimates[list(order)] - truth).max())
        for order in itertools.permutations(range(len(truth)))
    )


# --- chunking -------------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 99, 100, 101, 175, 250, 1234])
@pytest.mark.parametrize("block", [7, 64, 5000])
def test_iter_chunks_covers_signal_with_fixed_overlaps(total: int, block: int) -> None:
    signal = np.arange(total, dtype=np.float32)
    blocks = [signal[i : i + block] for i in range(0, total, block)]
    chunks = list(iter_chunks(blocks, chunk=100, overlap=25))
    assert [last for _, last in chunks] == [False] * (len(chunks) - 1) + [True]
    for index, (samples, _) in enumerate(chunks):
        start = index * 75
        np.testing.assert_array_equal(samples, signal[start : start + 100])
        if index < len(chunks) - 1:
            assert len(samples) == 100
    assert (len(chunks) - 1) * 75 + len(chunks[-1][0]) == total
    if len(chunks) > 1:
        assert len(chunks[-1][0]) > 25


def test_iter_chunks_of_empty_stream_is_empty() -> None:
    assert list(iter_chunks([np.zeros(0, np.float32)], chunk=10, overlap=2)) == []


def test_crossfade_weights_sum_to_one_and_ramp() -> None:
    fade_in, fade_out = crossfade(50)
    np.testing.assert_allclose(fade_in + fade_out, 1.0, atol=1e-6)
    assert np.all(np.diff(fade_in) > 0)
    assert fade_in[0] < 0.01 and fade_in[-1] > 0.99


# --- scaling and alignment ------------------------------------------------------------


def test_least_squares_gains_recover_levels_of_quiet_and_loud_sources() -> None:
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((3, 4000))
    sources[2] *= 1e-3  # 60 dB quieter: must not be shrunk towards zero
    mixture = sources.sum(axis=0)
    true_gains = np.array([0.5, 4.0, 20.0])
    gains = least_squares_gains(sources / true_gains[:, None], mixture)
    np.testing.assert_allclose(gains, true_gains, rtol=1e-3)


def test_least_squares_gains_stay_finite_for_silent_and_identical_estimates() -> None:
    rng = np.random.default_rng(0)
    voice = rng.standard_normal(1000)
    assert least_squares_gains(np.zeros((2, 1000)), voice).tolist() == [0.0, 0.0]
    gains = least_squares_gains(np.stack([voice, np.zeros(1000)]), voice)
    np.testing.assert_allclose(gains, [1.0, 0.0], atol=1e-3)
    gains = least_squares_gains(np.stack([voice, voice]), voice)
    np.testing.assert_allclose(gains, [0.5, 0.5], atol=1e-3)


def test_best_permutation_finds_order_and_ignores_silent_source() -> None:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((3, 500))
    for order in itertools.permutations(range(3)):
        candidate = np.empty_like(reference)
        candidate[list(order)] = reference * np.array([[2.0], [0.1], [1.0]])
        assert best_permutation(reference, candidate) == order
    silent = reference.copy()
    silent[1] = 0.0
    assert best_permutation(silent, silent[[2, 1, 0]]) == (2, 1, 0)
    assert best_permutation(np.zeros((2, 10)), np.zeros((2, 10))) == (0, 1)


def test_overlap_add_reassembles_consistently_ordered_chunks() -> None:
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((2, 1000)).astype(np.float32)
    joiner = OverlapAdd(overlap=40)
    pieces = []
    for index, (start, stop) in enumerate([(0, 300), (260, 560), (520, 820), (780, 1000)]):
        chunk = truth[:, start:stop]
        if index % 2:
            chunk = chunk[::-1]
        pieces.append(joiner.push(chunk, last=stop == 1000))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), truth, atol=1e-6)
    assert joiner.permutations == [(1, 0), (0, 1), (1, 0)]


# --- Separator on arrays --------------------------------------------------------------


def test_alignment_keeps_speakers_across_loudness_swaps_and_silences() -> None:
    sources = swapping_sources()
    oracle = OracleModel(sources)
    # Exactness of the alignment alone: the pause gate would also lower the quieter source
    # where it falls 20-26 dB below the other.
    separator = Separator(oracle, chunk_seconds=1.0, overlap_seconds=0.25, pause_gate=False)
    estimates = separator.separate(sources.sum(axis=0), RATE)
    # The oracle really shuffled: without alignment the speakers would jump between outputs.
    assert len(set(oracle.orders)) == 2 and len(oracle.orders) == 8
    assert estimates.shape == sources.shape
    assert match_error(estimates, sources) < 1e-3


def test_alignment_with_three_sources() -> None:
    sources = swapping_sources()
    rng = np.random.default_rng(2)
    # Silent from 5.2 s: each overlap still has at least two active sources.
    third = 0.2 * rng.standard_normal(sources.shape[1]) * (np.arange(sources.shape[1]) < 5.2 * RATE)
    sources = np.vstack([sources, third[np.newaxis]]).astype(np.float32)
    oracle = OracleModel(sources, seed=3)
    estimates = Separator(
        oracle, chunk_seconds=1.0, overlap_seconds=0.25, pause_gate=False
    ).separate(sources.sum(axis=0), RATE)
    assert len(set(oracle.orders)) > 2
    assert match_error(estimates, sources) < 1e-3


def test_pause_gate_lowers_leakage_through_long_pauses_only() -> None:
    sources = swapping_sources()
    leaky = sources + 0.1 * sources[::-1]  # each output leaks the other voice, 20 dB down
    mixture = leaky.sum(axis=0)
    gated, plain = (
        Separator(
            OracleModel(leaky), chunk_seconds=1.0, overlap_seconds=0.25, pause_gate=gate
        ).separate(mixture, RATE)
        for gate in (True, False)
    )
    assert match_error(plain, leaky) < 1e-3

    def level_db(x: np.ndarray, start: float, end: float) -> float:
        part = x[round(start * RATE) : round(end * RATE)].astype(np.float64)
        return float(10 * np.log10(part @ part))

    # Source 2 is silent from 2.0 to 3.2 s: its output holds only leakage there.
    drop = level_db(plain[1], 2.2, 3.0) - level_db(gated[1], 2.2, 3.0)
    assert 18.0 < drop < 22.0
    # Where both talk at similar levels, nothing changes.
    both = slice(round(3.5 * RATE), round(4.3 * RATE))
    np.testing.assert_array_equal(gated[:, both], plain[:, both])


def test_input_shorter_than_a_chunk_equals_unchunked_model_output() -> None:
    model = randomize_(load_model("tdanet-tiny"))
    separator = Separator(model, chunk_seconds=1.0, overlap_seconds=0.25)
    mixture = 0.1 * torch.randn(RATE // 2)
    with torch.inference_mode():
        direct = separator.model(mixture[None])[0].numpy()  # the inference path, unchunked
        eager = model(mixture[None])[0].numpy()
    np.testing.assert_allclose(direct, eager, atol=1e-4)
    expected = direct * least_squares_gains(direct, mixture.numpy())[:, None]
    assert np.abs(expected).max() < 0.99  # so the peak limiter does not act
    out = separator.separate(mixture, RATE)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    blocks = list(
        separate_blocks(separator.separate_chunk, [mixture.numpy()], chunk=RATE, overlap=RATE // 4)
    )
    assert len(blocks) == 1


def test_separate_resamples_downmixes_and_keeps_length() -> None:
    sources = swapping_sources(3.0)
    mixture = sources.sum(axis=0)
    stereo = np.stack([mixture * 1.5, mixture * 0.5])
    from_stereo, from_mono = (
        Separator(OracleModel(sources), chunk_seconds=1.0, overlap_seconds=0.25).separate(x, RATE)
        for x in (stereo, mixture)
    )
    np.testing.assert_allclose(from_stereo, from_mono, atol=1e-6)
    model = load_model("tdanet-tiny")
    resampling = Separator(model, chunk_seconds=1.0, overlap_seconds=0.25)
    for rate in (8000, 22050, 44100):
        length = int(2.3 * rate)
        out = resampling.separate(0.1 * np.random.default_rng(0).standard_normal(length), rate)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        assert out.shape == (2, length)
        assert np.isfinite(out).all()


def test_loud_output_is_limited_below_full_scale() -> None:
    sources = 3.0 * swapping_sources(2.0)
    separator = Separator(OracleModel(sources), chunk_seconds=1.0, overlap_seconds=0.25)
    out = separator.separate(sources.sum(axis=0), RATE)
    assert np.abs(out).max() == pytest.approx(0.99, rel=1e-5)
    # One common factor: the sources stay proportional to the truth.
    assert match_error(out / (0.99 / np.abs(sources).max()), sources) < 3e-3


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros(0), "no audio"),
        (np.zeros(10), "too short"),
        (np.zeros(4000), "silent"),
        (np.full(4000, np.nan), "NaN"),
        (np.r_[np.ones(100), np.inf], "NaN or infinite"),
    ],
)
def test_bad_arrays_raise_one_line_errors(samples: np.ndarray, message: str) -> None:
    separator = Separator("tdanet-tiny")
    with pytest.raises(AudioContentError, match=message) as info:
        separator.separate(samples, RATE)
    assert "\n" not in str(info.value)


def test_invalid_chunking_and_backend_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overlap"):
        Separator("tdanet-tiny", chunk_seconds=1.0, overlap_seconds=0.6)
    with pytest.raises(ValueError, match="backend"):
        Separator("tdanet-tiny", backend="tensorflow")
    with pytest.raises(CheckpointError, match=r"model\.pt.*\.onnx"):
        Separator(str(tmp_path / "model.pt"), backend="onnxruntime")


# --- Separator on files ---------------------------------------------------------------


def test_separate_file_streams_chunks_like_the_array_path(tmp_path: Path) -> None:
    sources = swapping_sources()
    mixture = sources.sum(axis=0)
    sf.write(tmp_path / "mix.wav", mixture, RATE, subtype="FLOAT")
    oracle = OracleModel(sources)
    separator = Separator(oracle, chunk_seconds=1.0, overlap_seconds=0.25, pause_gate=False)
    outputs = separator.separate_file(tmp_path / "mix.wav", tmp_path / "out", subtype="FLOAT")
    assert outputs == output_paths("mix.wav", tmp_path / "out", 2)
    assert [p.name for p in outputs] == ["mix_spk1.wav", "mix_spk2.wav"]
    estimates = np.stack([sf.read(p, dtype="float32")[0] for p in outputs])
    assert match_error(estimates, sources) < 1e-3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mix_spk1.wav", "mix_spk2.wav"]


def test_separate_file_at_other_rate_and_channels_matches_array_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((44100 * 3, 2))).astype(np.float32)
    sf.write(tmp_path / "in.flac", stereo, 44100, subtype="PCM_24")
    separator = Separator(
        randomize_(load_model("tdanet-tiny")), chunk_seconds=1.0, overlap_seconds=0.25
    )
    outputs = separator.separate_file(tmp_path / "in.flac", tmp_path, subtype="FLOAT")
    data, _ = sf.read(tmp_path / "in.flac", dtype="float32", always_2d=True)
    expected = separator.separate(data.T, 44100)
    for index, path in enumerate(outputs):
        written, rate = sf.read(path, dtype="float32")
        assert rate == 44100 and written.shape == (44100 * 3,)
        np.testing.assert_allclose(written, expected[index], atol=1e-5)


def test_separate_file_never_overwrites_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    separator = Separator("tdanet-tiny", chunk_seconds=0.5, overlap_seconds=0.1)
    good = 0.1 * np.random.default_rng(0).standard_normal(RATE)
    sf.write(tmp_path / "a.wav", good, RATE)
    out = tmp_path / "out"
    first = separator.separate_file(tmp_path / "a.wav", out)
    before = [p.read_bytes() for p in first]
    with pytest.raises(AudioWriteError, match="already exists"):
        separator.separate_file(tmp_path / "a.wav", out)
    assert [p.read_bytes() for p in first] == before
    assert separator.separate_file(tmp_path / "a.wav", out, overwrite=True) == first
    # NaN after several chunks: fails part-way through pass 1, leaves no file behind.
    late_nan = np.r_[good, good, good, [np.nan]].astype(np.float32)
    sf.write(tmp_path / "b.wav", late_nan, RATE, subtype="FLOAT")
    with pytest.raises(AudioContentError, match=r"b\.wav.*NaN"):
        separator.separate_file(tmp_path / "b.wav", out)
    assert sorted(p.name for p in out.iterdir()) == ["a_spk1.wav", "a_spk2.wav"]
    sf.write(tmp_path / "silent.wav", np.zeros(RATE), RATE)
    with pytest.raises(AudioContentError, match=r"silent\.wav.*silent"):
        separator.separate_file(tmp_path / "silent.wav", out)
    assert sorted(p.name for p in out.iterdir()) == ["a_spk1.wav", "a_spk2.wav"]


def test_pcm_output_of_loud_input_does_not_clip(tmp_path: Path) -> None:
    sources = 2.0 * swapping_sources(2.0)
    sf.write(tmp_path / "loud.wav", sources.sum(axis=0), RATE, subtype="FLOAT")
    separator = Separator(OracleModel(sources), chunk_seconds=1.0, overlap_seconds=0.25)
    outputs = separator.separate_file(tmp_path / "loud.wav", tmp_path)
    peaks = [np.abs(sf.read(p, dtype="float32")[0]).max() for p in outputs]
    assert max(peaks) == pytest.approx(0.99, abs=1e-3)


def test_onnxruntime_backend_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from tdanet.export import export_onnx

    model = randomize_(load_model("tdanet-tiny"))
    path = export_onnx(model, tmp_path / "tiny.onnx", example_seconds=0.5)
    mixture = 0.1 * np.random.default_rng(0).standard_normal(int(2.5 * RATE)).astype(np.float32)
    onnx = Separator(str(path), backend="onnxruntime", chunk_seconds=1.0, overlap_seconds=0.25)
    eager = Separator(model, chunk_seconds=1.0, overlap_seconds=0.25)
    assert onnx.config == model.config
    np.testing.assert_allclose(
        onnx.separate(mixture, RATE), eager.separate(mixture, RATE), atol=1e-4
    )


def test_separator_from_checkpoint_path_reports_progress(tmp_path: Path) -> None:
    from tdanet import save_checkpoint

    save_checkpoint(randomize_(load_model("tdanet-tiny")), tmp_path / "tiny.pt")
    separator = Separator(tmp_path / "tiny.pt", chunk_seconds=1.0, overlap_seconds=0.25)
    assert (separator.sample_rate, separator.num_sources) == (16000, 2)
    sf.write(tmp_path / "in.wav", 0.1 * np.random.default_rng(0).standard_normal(3 * 22050), 22050)
    seen: list[float] = []
    separator.separate_file(tmp_path / "in.wav", tmp_path / "out", progress=seen.append)
    assert len(seen) >= 3 and seen == sorted(seen) and seen[-1] == pytest.approx(3.0)


class NanAfterModel:
    """Finite output for the first ``good_calls`` chunks, then NaN: a model that breaks."""

    def __init__(self, good_calls: int) -> None:
        self.config = PRESETS["tdanet-tiny"]
        self.good_calls = good_calls
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = torch.stack([batch, 0.5 * batch], dim=1)
        return out if self.calls <= self.good_calls else out * float("nan")


def test_non_finite_model_output_fails_the_file_and_writes_nothing(tmp_path: Path) -> None:
    signal = 0.1 * np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32)
    sf.write(tmp_path / "in.wav", signal, RATE)
    out = tmp_path / "out"
    separator = Separator(NanAfterModel(2), chunk_seconds=1.0, overlap_seconds=0.25)
    with pytest.raises(AudioContentError, match=r"in\.wav: the model's output at 1\.5 s is not"):
        separator.separate_file(tmp_path / "in.wav", out)
    assert list(out.iterdir()) == []
    with pytest.raises(AudioContentError, match="not finite"):
        Separator(NanAfterModel(0)).separate(signal, RATE)


def test_huge_finite_input_that_overflows_the_model_is_refused(tmp_path: Path) -> None:
    # +-3e38 is finite float32, but the model's arithmetic overflows to Inf and NaN.
    huge = np.where(np.random.default_rng(0).random(RATE) > 0.5, 3e38, -3e38).astype(np.float32)
    sf.write(tmp_path / "huge.wav", huge, RATE, subtype="FLOAT")
    separator = Separator(randomize_(load_model("tdanet-tiny")))
    with pytest.raises(AudioContentError, match=r"huge\.wav: .*not finite"):
        separator.separate_file(tmp_path / "huge.wav", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(AudioContentError, match="not finite"):
        separator.separate(huge, RATE)


def test_a_new_run_removes_the_temporaries_a_killed_run_left(tmp_path: Path) -> None:
    import os
    import time

    sf.write(tmp_path / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(RATE), RATE)
    out = tmp_path / "out"
    out.mkdir()
    old = time.time() - 3600
    stale = [out / ".a_spk1.wav.0123abcd.tmp", out / ".a_spk2.wav.deadbeef.tmp"]
    fresh = out / ".a_spk1.wav.89abcdef.tmp"  # another run may be writing it right now
    others = [out / ".b_spk1.wav.0123abcd.tmp", out / ".a_spk1.wav.notmine.tmp", out / "x.tmp"]
    for path in [*stale, fresh, *others]:
        path.write_bytes(b"partial")
        if path is not fresh:
            os.utime(path, (old, old))
    Separator("tdanet-tiny").separate_file(tmp_path / "a.wav", out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["a_spk1.wav", "a_spk2.wav", fresh.name, *(p.name for p in others)]
    )


def test_silent_file_is_refused_before_any_model_call(tmp_path: Path) -> None:
    calls = []
    model = load_model("tdanet-tiny")

    def counting(waveform: torch.Tensor) -> torch.Tensor:
        calls.append(waveform.shape[-1])
        return model(waveform)

    counting.config = model.config  # type: ignore[attr-defined]
    separator = Separator(counting, chunk_seconds=0.5, overlap_seconds=0.1)
    sf.write(tmp_path / "silent.wav", np.zeros((3 * RATE, 2)), RATE)
    with pytest.raises(AudioContentError, match=r"silent\.wav: is silent"):
        separator.separate_file(tmp_path / "silent.wav", tmp_path / "out")
    assert calls == []
    # Channels that cancel in the downmix are silent too; one non-zero sample is not.
    stereo = np.zeros((3 * RATE, 2))
    stereo[:, 0], stereo[:, 1] = 0.5, -0.5
    sf.write(tmp_path / "cancel.wav", stereo, RATE)
    with pytest.raises(AudioContentError, match="is silent"):
        separator.separate_file(tmp_path / "cancel.wav", tmp_path / "out")
    late = np.zeros(3 * RATE)
    late[-1] = 0.1
    sf.write(tmp_path / "late.wav", late, RATE)
    assert len(separator.separate_file(tmp_path / "late.wav", tmp_path / "out")) == 2
    assert calls


def test_map_in_order_keeps_order_and_bounds_the_calls_in_flight() -> None:
    import threading
    import time

    from tdanet.separate import map_in_order

    running, most, lock = [0], [0], threading.Lock()

    def slow(value: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (value % 3))
        with lock:
            running[0] -= 1
        return value * value

    taken: list[int] = []

    def items() -> Iterator[int]:
        for value in range(12):
            taken.append(value)
            yield value

    seen = []
    for result in map_in_order(slow, items(), workers=3):
        seen.append(result)
        assert len(taken) - len(seen) <= 4  # never more than `workers + 1` items ahead
    assert seen == [v * v for v in range(12)] and 1 < most[0] <= 3
    assert list(map_in_order(slow, range(4), workers=1)) == [0, 1, 4, 9]


FORKED_MAP = """
import os, sys
from tdanet.separate import fork_is_safe, map_in_order

def square(value):
    return os.getpid(), value * value

def fail_on_four(value):
    if value == 4:
        raise ValueError(f"bad item {value}")
    return value

assert fork_is_safe()
results = list(map_in_order(square, range(7), workers=2, processes=True))
assert [value for _, value in results] == [v * v for v in range(7)], results
assert os.getpid() not in {pid for pid, _ in results}, "not forked"
try:
    list(map_in_order(fail_on_four, range(7), workers=2, processes=True))
except ValueError as error:
    print(error)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="forked workers are used on Linux only")
def test_map_in_order_forks_workers_that_keep_order_and_raise() -> None:
    # A fresh interpreter: this one may run other tests' threads, where no fork is made.
    done = subprocess.run(
        [sys.executable, "-c", FORKED_MAP], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "bad item 4"


def test_workers_give_the_same_output_as_one(tmp_path: Path) -> None:
    model = randomize_(load_model("tdanet-tiny"))
    signal = 0.1 * np.random.default_rng(3).standard_normal(5 * 16000).astype(np.float32)
    outputs = []
    for workers in (1, 3):
        separator = Separator(model, chunk_seconds=1.0, overlap_seconds=0.25, workers=workers)
        outputs.append(separator.separate(signal, 16000))
        sf.write(tmp_path / "in.wav", signal, 16000, subtype="FLOAT")
        written = separator.separate_file(
            tmp_path / "in.wav", tmp_path / f"out{workers}", subtype="FLOAT"
        )
        outputs.append(np.stack([sf.read(path, dtype="float32")[0] for path in written]))
    np.testing.assert_array_equal(outputs[0], outputs[2])
    np.testing.assert_array_equal(outputs[1], outputs[3])
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Separator(model, workers=0)


@pytest.mark.parametrize("rate", [16000, 22050])  # the model's rate, and resampled back
def test_outputs_written_in_the_first_pass_equal_those_of_the_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int
) -> None:
    separator = Separator(
        randomize_(load_model("tdanet-tiny")),
        chunk_seconds=1.0,
        overlap_seconds=0.25,
        pause_gate=False,
    )
    signal = 0.1 * np.random.default_rng(5).standard_normal(3 * rate + 7)
    sf.write(tmp_path / "in.wav", signal.astype(np.float32), rate, subtype="FLOAT")
    discarded: list[audio.AtomicAudioWriter] = []
    real_discard = audio.AtomicAudioWriter.discard
    monkeypatch.setattr(
        audio.AtomicAudioWriter,
        "discard",
        lambda self: discarded.append(self) or real_discard(self),
    )
    early = separator.separate_file(tmp_path / "in.wav", tmp_path / "early")
    assert discarded == []  # kept: no gain below 1, no merging, no gate
    real_first_pass = Separator._first_pass
    monkeypatch.setattr(  # nothing written early: the second pass writes the outputs
        Separator,
        "_first_pass",
        lambda self, reader, scratch, progress, early=None: real_first_pass(
            self, reader, scratch, progress
        ),
    )
    late = separator.separate_file(tmp_path / "in.wav", tmp_path / "late")
    assert len(discarded) == 1
    for first, second in zip(early, late, strict=True):
        assert sf.info(first).frames == len(signal)
        assert first.read_bytes() == second.read_bytes()


def test_lower_precisions_run_the_eager_model_under_autocast() -> None:
    model = randomize_(load_model("tdanet-tiny"))
    mixture = 0.1 * torch.randn(RATE // 2).numpy()
    full = Separator(model, chunk_seconds=1.0, overlap_seconds=0.25).separate(mixture, RATE)
    for precision in ("bf16", "fp16"):
        low = Separator(model, chunk_seconds=1.0, overlap_seconds=0.25, precision=precision)
        out = low.separate(mixture, RATE)
        assert out.dtype == np.float32
        # Close to float32 (bf16 keeps 8 bits of mantissa: about 40 dB), yet not identical.
        error = np.sum((out - full) ** 2) / np.sum(full**2)
        assert 0 < error < 1e-2, precision


def test_precision_is_checked() -> None:
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        Separator("tdanet-tiny", precision="fp8")
    with pytest.raises(ValueError, match="needs the torch backend"):
        Separator("model.onnx", backend="onnxruntime", precision="bf16")
