"""Long recordings with the shipped default model: a 10-minute conversation of held-out voices.

The conversation (``tests/conversation.py``, Tux Paint voices, GPL-2) has turn-taking,
pauses, about 19 % overlapped speech and a second speaker 6 dB quieter. The bounds are what
the chosen method achieves with the current ``tdanet-demo`` (docs/separate.md); re-measure
them with ``python benchmarks/bench_stitching.py`` when the model changes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tdanet.cli import main
from tdanet.segments import frame_energies, speech_segments
from tdanet.separate import OverlapAdd, Separator, best_permutation
from tdanet.speakers import VoiceProfiles, voice_features

from .conversation import (
    Conversation,
    build_conversation,
    frame_agreement,
    inactive_levels,
    si_snri_report,
    speaker_changes,
    whole_order,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conversation() -> Conversation:
    return build_conversation()


@pytest.fixture(scope="module")
def separated(conversation: Conversation) -> dict[str, np.ndarray]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for name, kwargs in {
            "voices": {},
            "overlap": {"align": "overlap"},
            "lone": {"route_lone_voices": True},
        }.items():
            separator = Separator("tdanet-demo", **kwargs)  # type: ignore[arg-type]
            results[name] = separator.separate(conversation.mixture, conversation.sample_rate)
            results[name + "-energies"] = separator.last_energies  # type: ignore[assignment]
        return results
    finally:
        torch.set_num_threads(threads)


def test_conversation_is_as_specified(conversation: Conversation) -> None:
    assert conversation.mixture.shape[0] == 600 * conversation.sample_rate
    assert conversation.overlap_share >= 0.15
    assert conversation.activity.mean(axis=1).min() > 0.3
    levels = [
        np.sqrt(np.mean(source[active] ** 2))
        for source, active in zip(conversation.sources, conversation.activity, strict=True)
    ]
    assert 20 * np.log10(levels[0] / levels[1]) > 4.0


def test_voice_alignment_keeps_each_speaker_in_one_output(
    conversation: Conversation, separated: dict[str, np.ndarray]
) -> None:
    differ, changes = speaker_changes(separated["voices"], conversation)
    assert (differ, changes) == (0, 0)
    whole, per_window = si_snri_report(separated["voices"], conversation)
    assert whole >= per_window - 1.0
    # The overlap alone (the old alignment) keeps them too with this model (the previous one
    # changed outputs twice on seed 1); voice profiles matter where it cannot decide
    # (test_voice_profiles_break_a_tie_the_overlap_cannot).
    assert speaker_changes(separated["overlap"], conversation) == (0, 0)


def test_lone_voice_routing_quietens_the_inactive_output(
    conversation: Conversation, separated: dict[str, np.ndarray]
) -> None:
    plain = inactive_levels(separated["voices"], conversation)
    routed = inactive_levels(separated["lone"], conversation)
    # Measured 0.64 (pause gate) -> 0.74 of the single-speaker stretches at least 20 dB down.
    assert (routed <= -20).mean() >= 0.72 > (plain <= -20).mean() >= 0.6
    # Routing can cost consistency (measured (0, 0) on seed 0, (1, 2) on seed 1).
    assert speaker_changes(separated["lone"], conversation)[0] <= 1


def test_speech_segments_agree_with_the_reference(
    conversation: Conversation, separated: dict[str, np.ndarray]
) -> None:
    # Measured 0.784 (plain) and 0.745 (lone voices routed) with the current model; the
    # issue asks 0.90 (docs/separate.md).
    for name, bound in (("voices", 0.78), ("lone", 0.74)):
        segments = speech_segments(separated[name + "-energies"])
        order = whole_order(separated[name], conversation)
        assert frame_agreement(segments, conversation, order) >= bound


def test_segments_of_a_perfect_separation_meet_the_issues_agreement(
    conversation: Conversation,
) -> None:
    # The clean sources as outputs: no leakage, so a 6 dB-quieter talker in overlaps counts
    # (a fixed 6 dB dominance rule capped this at 85 %; measured 94.1 %).
    energies = frame_energies(conversation.sources, conversation.sample_rate)
    assert frame_agreement(speech_segments(energies), conversation, (0, 1)) >= 0.9


def test_voice_profiles_break_a_tie_the_overlap_cannot() -> None:
    rng = np.random.default_rng(0)
    rate = 16_000
    low = np.sin(2 * np.pi * 150 * np.arange(rate) / rate) * (1 + 0.1 * rng.standard_normal(rate))
    high = np.convolve(rng.standard_normal(rate), [1, -1], mode="same")
    profiles = VoiceProfiles(2)
    profiles.add(*voice_features(np.stack([low, high]), rate))
    swapped = np.stack([high, low])
    features, weights = voice_features(swapped, rate)
    silent = np.zeros((2, 100))
    assert best_permutation(silent, silent) == (0, 1)
    assert best_permutation(silent, silent, profiles.scores(features, weights)) == (1, 0)


def test_overlap_add_rejects_unknown_alignment() -> None:
    with pytest.raises(ValueError, match="align must be one of"):
        OverlapAdd(10, 16_000, align="oracle")


def test_cli_segments_and_no_single_speaker_note_on_a_conversation(
    tmp_path: Path, conversation: Conversation, capsys: pytest.CaptureFixture[str]
) -> None:
    minute = 60 * conversation.sample_rate
    sf.write(tmp_path / "talk.wav", conversation.mixture[:minute], conversation.sample_rate)
    sf.write(tmp_path / "alone.wav", conversation.sources[1, :minute], conversation.sample_rate)
    out = tmp_path / "out"
    args = ["separate", str(tmp_path / "talk.wav"), str(tmp_path / "alone.wav"), "-o", str(out)]
    assert main([*args, "--segments", "--quiet"]) == 0
    # This model splits a lone voice between its outputs too evenly for the note on
    # alone.wav (docs/separate.md); tests/test_batch.py checks the note itself.
    assert "talk.wav: seems" not in capsys.readouterr().err
    rows = list(csv.DictReader((out / "talk_segments.csv").read_text().splitlines()))
    assert {row["speaker"] for row in rows} == {"spk1", "spk2"}
    assert all(0 <= float(r["start"]) < float(r["end"]) <= 60.0 for r in rows)
    rttm = (out / "talk.rttm").read_text().splitlines()
    assert len(rttm) == len(rows)
    assert rttm[0].split()[:3] == ["SPEAKER", "talk", "1"]
    # Existing segment files are refused before anything is separated.
    assert main([*args, "--segments", "--quiet"]) == 1
    assert "talk.rttm: already exists" in capsys.readouterr().err
