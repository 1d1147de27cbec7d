from __future__ import annotations

import json
import mmap

import numpy as np
import pytest
import torch

from tdanet.cli import main
from tdanet.model import PRESETS, TDANet
from tdanet.profile import (
    count_macs,
    paper_macs,
    peak_rss_growth,
    profile_model,
)

from .conftest import randomize_

pytestmark = pytest.mark.usefixtures("one_thread")


def macs_by_hand(config, frames_per_level: list[int]) -> int:
    """MACs of the matrix products and convolutions, counted from the architecture spec with
    ptflops' convention (a bias adds one MAC per output element)."""
    n, b, k, c = config.in_channels, config.out_channels, config.enc_bases, config.num_sources
    L = config.kernel_size
    f0, top = frames_per_level[0], frames_per_level[-1]
    depth = len(frames_per_level)
    block = (b * n + n) * f0 + (n * b + b) * f0  # proj_1x1, res_conv (with biases)
    for frames in frames_per_level:
        block += (n * 5 + n) * frames  # spp_dw (with bias)
        block += n * frames + 2 * n * top  # loc_glo_fus: local (kernel 1), global act + embedding
    block += 2 * (n * n + n) * top  # value and output projections (frame attention)
    block += 2 * (n * 2 * n * top) + (2 * n * 5 + 2 * n) * top  # fc1, fc2, dwconv
    # last_layer i: local conv at level i, two guide convs at level i+1 (first step: i-1)
    for i in range(depth - 1):
        guide = frames_per_level[i - 1] if i == depth - 2 else frames_per_level[i + 1]
        block += n * 5 * frames_per_level[i] + 2 * n * 5 * guide
    total = config.num_blocks * block + (config.num_blocks - 1) * 2 * b * f0  # concat_block
    total += k * L * f0 + (k * b + b) * f0 + (b * c * k + c * k) * f0  # encoder, bottleneck, mask
    total += c * k * c * L * f0  # transposed-conv decoder: every input frame, C*K -> C, L taps
    return total


def test_mac_count_matches_a_count_from_the_spec() -> None:
    config = PRESETS["tdanet-tiny"]
    model = TDANet(config).eval()
    # 1600 samples: padded to 1600 + 48 + 2 * 48 = 1744 -> 110 encoder frames -> 55 -> 28.
    counted = count_macs(model, 1600 / config.sample_rate)
    assert counted == macs_by_hand(config, [110, 55, 28])


class _WithLSTM(torch.nn.Module):
    def __init__(self, lstm: torch.nn.LSTM) -> None:
        super().__init__()
        self.lstm = lstm
        self.config = PRESETS["tdanet-tiny"]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform[:, : waveform.shape[-1] // 4 * 4].reshape(waveform.shape[0], -1, 4)
        if not self.lstm.batch_first:
            frames = frames.transpose(0, 1)
        return self.lstm(frames)[0]


@pytest.mark.parametrize(
    ("bidirectional", "layers", "batch_first"), [(False, 1, True), (True, 2, False)]
)
def test_mac_count_of_lstms(bidirectional: bool, layers: int, batch_first: bool) -> None:
    lstm = torch.nn.LSTM(
        4, 6, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first
    )
    model = _WithLSTM(lstm).eval()
    steps = 1600 // 4
    directions = 2 if bidirectional else 1
    per_step = directions * 4 * 6 * (4 + 6)
    per_step += (layers - 1) * directions * 4 * 6 * (6 * directions + 6)
    # ptflops' aten backend sees nothing inside aten.lstm: all of it comes from the hook.
    assert count_macs(model, 1600 / model.config.sample_rate) == steps * per_step


def test_paper_figures_are_attached_to_their_architectures() -> None:
    assert paper_macs(PRESETS["tdanet"]) == 4.7e9
    assert paper_macs(PRESETS["tdanet"].replace(attention="sequence")) == 4.7e9
    assert paper_macs(PRESETS["tdanet-large"]) == 9.1e9
    assert paper_macs(PRESETS["tdanet-tiny"]) is None


def test_peak_rss_growth_sees_an_allocation_below_an_earlier_peak() -> None:
    # An earlier, larger peak must not hide this call's (the kernel's mark is reset).
    earlier = np.ones(120 * 2**20 // 8)
    del earlier

    def allocate() -> None:
        # Fresh pages from the kernel: malloc may reuse resident memory that earlier tests freed.
        with mmap.mmap(-1, 40 * 2**20) as block:
            np.frombuffer(block, dtype=np.uint8)[:] = 1

    growth = peak_rss_growth(allocate)
    assert growth is not None and 30 <= growth < 100


def test_profile_report_on_tiny_model() -> None:
    model = randomize_(TDANet(PRESETS["tdanet-tiny"])).eval()
    report = profile_model(model, name="tdanet-tiny", seconds=0.1, runs=1, memory=False)
    assert report.parameters == 25463
    assert report.seconds == 0.1
    assert report.macs_per_second == count_macs(model, 0.1) / 0.1
    assert report.fast.cpu > 0 and report.fast.wall > 0
    assert report.eager is not None and report.speedup == report.eager.cpu / report.fast.cpu
    assert report.paper_macs_per_second is None
    assert (report.gpu is None) == (not torch.cuda.is_available())
    assert model.training is False
    json.dumps(report.to_dict())


def test_profile_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    # 10 s of audio: the activations are tens of MiB, so the fresh-process memory shows them.
    args = ["profile", "--model", "tdanet-tiny", "--seconds", "10", "--runs", "1", "--no-eager"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tdanet-tiny"
    assert report["seconds"] == 10
    assert report["eager"] is None
    assert 1e7 < report["macs_per_second"] < 1e8
    assert report["fast_peak_memory_mb"] > 5


def test_profile_cli_text_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (the JSON test above runs the real command): text output and errors.
    args = ["profile", "--model", "tdanet-tiny", "--seconds", "0.1", "--runs", "1"]
    assert main([*args, "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "MACs per second of audio" in out
    assert "CPU time per second of audio, fast path" in out
    assert "eager model" in out and "speed-up" in out
    assert "peak memory" not in out
    assert main(["profile", "--model", "tdanet-tiny", "--seconds", "0"]) == 1
    assert "--seconds must be positive" in capsys.readouterr().err
    assert main(["profile", "--model", "no-such-model.pt"]) == 1
    err = capsys.readouterr().err
    assert "no-such-model.pt" in err and err.count("\n") == 1
