from __future__ import annotations

import numpy as np

from tdanet.speakers import voice_features

RATE = 16000


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.sin(2 * np.pi * freq * t).astype(np.float32)


def test_leakage_of_another_output_gives_no_voice_feature() -> None:
    voice, other = tone(220.0), tone(1800.0)
    # Output 1 holds only output 0's voice, 20 dB down: a leak, not a voice of its own.
    _, weights = voice_features(np.stack([voice, 0.1 * voice]), RATE)
    assert weights[0] > 0 and weights[1] == 0
    # A voice of its own 10 dB down is kept, with its own spectral shape.
    features, weights = voice_features(np.stack([voice, 0.3 * other]), RATE)
    assert weights.min() > 0
    assert np.argmax(features[1]) > np.argmax(features[0])
