import numpy as np

from tdanet.segments import FrameEnergy, frame_energies


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
