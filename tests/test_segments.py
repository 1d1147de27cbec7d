import numpy as np

from tdanet.segments import (
    LEAK_MARGIN_DB,
    MAX_DOMINANCE_DB,
    MIN_DOMINANCE_DB,
    PAUSE_DOMINANCE_DB,
    PAUSE_GATE_DB,
    PAUSE_RAMP_SECONDS,
    FrameEnergy,
    activity,
    dominance_db,
    frame_energies,
    gains_at,
    pause_gains,
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


def test_pause_gains_lower_long_pauses_only_with_ramps_inside_them() -> None:
    # 10 ms frames: a talks 0-3 s, 5-5.5 s and 6-10 s (pauses of 2 s and 0.5 s); b leaks
    # 15 dB below a and talks alone 3-5 s.
    frames = 1000
    a = np.full(frames, 1e-6)
    a[:300] = a[500:550] = a[600:] = 1.0
    b = a * 10**-1.5
    b[300:500] = 1.0
    energies = np.stack([a, b])
    pauses = [
        np.flatnonzero(np.diff(np.r_[0, ~row, 0])).reshape(-1, 2).tolist()
        for row in activity(energies, PAUSE_DOMINANCE_DB)
    ]
    (long_a, short_a), ((head_b, end_head_b), (tail_b, end_b)) = pauses[0], pauses[1]
    gains = pause_gains(energies)
    floor = 10 ** (-PAUSE_GATE_DB / 20)
    ramp = round(PAUSE_RAMP_SECONDS / 0.01)
    start, end = long_a
    assert 150 < end - start < 250 and short_a[1] - short_a[0] < 100
    assert np.all(gains[0, :start] == 1.0) and np.all(gains[0, end:] == 1.0)  # short one kept
    np.testing.assert_allclose(gains[0, start + ramp : end - ramp], floor)
    assert 1.0 > gains[0, start] > gains[0, start + 1] > floor  # ramps down from speech before
    assert 1.0 > gains[0, end - 1] > gains[0, end - 2] > floor  # and up to the speech after
    # b pauses from the file's start and up to its end: no ramp towards a file edge.
    assert head_b == 0 and end_b == frames
    np.testing.assert_allclose(gains[1, : end_head_b - ramp], floor)
    np.testing.assert_allclose(gains[1, tail_b + ramp :], floor)
    # An output that never speaks is lowered throughout; no frames, no gains.
    np.testing.assert_allclose(pause_gains(np.stack([a, np.zeros(frames)]))[1], floor)
    assert pause_gains(np.zeros((2, 0))).shape == (2, 0)


def test_gains_at_interpolates_frame_gains_at_any_rate() -> None:
    gains = np.array([[1.0, 0.0, 1.0]])  # frame centres at 5, 15 and 25 ms
    at_8k = gains_at(gains, 0, 240, 8_000)
    assert at_8k.shape == (1, 240) and at_8k.dtype == np.float32
    assert at_8k[0, 0] == 1.0 and at_8k[0, 119] < 0.01 and at_8k[0, 239] == 1.0
    np.testing.assert_allclose(gains_at(gains, 100, 20, 8_000), at_8k[:, 100:120])
    np.testing.assert_allclose(gains_at(np.ones((2, 0)), 0, 5, 16_000), np.ones((2, 5)))
