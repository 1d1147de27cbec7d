import pytest
import torch

from tdanet.model import PRESETS, TDANet
from tdanet.model.widen import copy_sources, widen_in_channels

from ..conftest import randomize_


def narrow_model(**changes: object) -> TDANet:
    config = PRESETS["tdanet-tiny"].replace(dropout=0.0, drop_path=0.0, **changes)
    return randomize_(TDANet(config), seed=4).eval()


@pytest.mark.parametrize("factor", [2, 3])
def test_widening_keeps_the_function(factor: int) -> None:
    model = narrow_model()
    wide = widen_in_channels(model, factor * model.config.in_channels, noise=0.0).eval()
    assert wide.config.in_channels == factor * model.config.in_channels
    assert wide.config.replace(in_channels=model.config.in_channels) == model.config
    mixture = torch.randn(2, 3001, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(wide(mixture), model(mixture), atol=1e-5)
        # The noise that lets the copies learn apart moves the output only a little.
        noisy = widen_in_channels(model, factor * model.config.in_channels).eval()(mixture)
        change = (noisy - model(mixture)).norm() / model(mixture).norm()
        assert 0 < change < 0.01


def test_copies_keep_the_position_frequencies_at_every_kth_pair() -> None:
    source, matching = copy_sources(4, 2)
    assert source.tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    assert matching.tolist() == [True, True, False, False, True, True, False, False]


def test_widening_refuses_what_it_cannot_keep() -> None:
    with pytest.raises(ValueError, match="attention='frame'"):
        widen_in_channels(narrow_model(attention="sequence"), 64)
    with pytest.raises(ValueError, match="multiple of the model's 32"):
        widen_in_channels(narrow_model(), 48)
