"""Datasets: published pre-mixed layouts, speaker-labelled recordings and dynamic mixing."""

from .layouts import SeparationFolderDataset, layout_dataset
from .mixing import DynamicMixDataset, MixingConfig, MixtureDrawer
from .sources import Utterance, index_sources, split_speakers

__all__ = [
    "DynamicMixDataset",
    "MixingConfig",
    "MixtureDrawer",
    "SeparationFolderDataset",
    "Utterance",
    "index_sources",
    "layout_dataset",
    "split_speakers",
]
