import numpy as np

from tdanet.segments import (
    LEAK_MARGIN_DB,
    MAX_DOMINANCE_DB,
    MIN_DOMINANCE_DB,
    FrameEnergy,
    dominance_db,
    frame_energies,
    speech_segments,
)


def test_frame_energy_streamed_in_odd_blocks_equals_the_whole() -> None:
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((2, 16_000 * 3 + 37)).astype(np.float32)
    meter = FrameEnergy(2, 16_000)
    for start, end in [(0, 1), (1, 159), (159, 5_000), (5_000, 31_337), (31_337, sources.shape[1])]:
        meter.push(sources[:, start:end])
    streamed = meter.energies()
    frames = sources.shape[1] // 160
    expected = (sources[:, : frames * 160].astype(np.float64).reshape(2, frames, 160) ** 2).mean(2)
    tail = (sources[:, frames * 160 :].astype(np.float64) ** 2).mean(axis=1, keepdims=True)
    assert streamed.shape == (2, frames + 1)
    np.testing.assert_allclose(streamed, np.concatenate([expected, tail], axis=1), rtol=1e-5)
    np.testing.assert_allclose(frame_energies(sources, 16_000), streamed, rtol=1e-5)


def test_dominance_sits_above_the_outputs_leakage() -> None:
    speech = np.ones(100, bool)
    first = np.ones(100)
    assert dominance_db(np.stack([first, np.zeros(100)]), speech) == MAX_DOMINANCE_DB
    assert dominance_db(np.stack([first, first * 10**-2.0]), speech) == 20.0 - LEAK_MARGIN_DB
    assert dominance_db(np.stack([first, first * 10**-0.5]), speech) == MIN_DOMINANCE_DB
    assert dominance_db(np.stack([first, first]), np.zeros(100, bool)) == MAX_DOMINANCE_DB


def test_a_quiet_second_talker_counts_unless_the_outputs_leak_that_loud() -> None:
    frames = 1000  # 10 s of 10 ms frames: a talks throughout, b 12 dB quieter in the middle
    a = np.ones(frames)
    b = np.zeros(frames)
    b[400:600] = 10**-1.2
    clean = speech_segments(np.stack([a, b]))
    assert [(round(s, 1), round(e, 1), o) for s, e, o in clean if o == 1] == [(4.0, 6.0, 1)]
    leaky = np.stack([a, np.maximum(b, 10**-1.0 * a)])  # b's output leaks a at -10 dB
    assert [s for s in speech_segments(leaky) if s[2] == 1] == []
