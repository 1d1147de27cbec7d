"""``tdanet stream INPUT -o OUTDIR``: causal, block-by-block separation as it would run live."""

from __future__ import annotations

import argparse
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HELP = "separate block by block with a causal model, as live audio would be (file, stdin, mic)"
# The model `stream` uses when none is given: tdanet.pretrained.DEFAULT_CAUSAL_MODEL (named
# here too, so that --help loads no torch; a test keeps the two equal).
DEFAULT_STREAM_MODEL = "tfacm-demo"
# Sample formats of stdin WAV (PCM only: `wave` reads a pipe without seeking).
_WAV_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input",
        nargs="?",
        metavar="INPUT",
        help="audio file, or - for stdin (WAV, or raw 16-bit PCM with --raw-rate); omit with --mic",
    )
    parser.add_argument(
        "-o", "--output-dir", default="separated", help="output folder (default: separated)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help=f"causal (TFACM) model: bundled name, checkpoint or preset; default: the bundled "
        f"{DEFAULT_STREAM_MODEL}",
    )
    parser.add_argument(
        "--block-ms", type=float, default=16.0, help="block size in milliseconds (default: 16)"
    )
    parser.add_argument(
        "--raw-rate",
        type=int,
        default=None,
        help="stdin holds raw mono 16-bit little-endian PCM at this rate, not WAV",
    )
    parser.add_argument(
        "--mic",
        action="store_true",
        help="separate the default microphone live (needs the sounddevice package)",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="with --mic: stop after this many seconds"
    )
    parser.add_argument(
        "--play",
        type=int,
        default=None,
        metavar="N",
        help="with --mic: play source N (1-based) on the default output device",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    import soxr
    import torch

    from .. import audio
    from ..errors import AudioContentError, TDANetError
    from ..model import TFACM
    from ..pretrained import load_model
    from ..separate import output_paths
    from ..streaming import StreamingSeparator
    from . import warn_if_untrained

    if (args.input is None) == (not args.mic):
        raise TDANetError("give exactly one of INPUT (a file or -) and --mic")
    if not args.block_ms > 0:
        raise TDANetError(f"--block-ms must be positive, got {args.block_ms}")
    if args.raw_rate is not None and (args.input != "-" or args.raw_rate < 1):
        raise TDANetError("--raw-rate takes a positive rate and applies only to INPUT -")
    if not args.mic and (args.seconds is not None or args.play is not None):
        raise TDANetError("--seconds and --play apply only to --mic")
    name = DEFAULT_STREAM_MODEL if args.model is None else args.model
    model = load_model(name)
    if not isinstance(model, TFACM):
        raise TDANetError(
            f"{name}: a TDANet needs the whole recording and cannot stream; pass a causal "
            f"model (the bundled {DEFAULT_STREAM_MODEL}, or a TFACM checkpoint)"
        )
    warn_if_untrained("stream", name)
    torch.set_num_threads(1)  # one core, as a live device would give it
    engine = StreamingSeparator(model)
    rate = engine.sample_rate
    sources = engine.num_sources
    out_dir = Path(args.output_dir)

    if args.mic:
        return _run_mic(args, engine, out_dir)
    if args.input == "-":
        blocks, in_rate = _stdin_blocks(args.raw_rate, args.block_ms)
        stem = "stdin"
    else:
        info = audio.audio_info(args.input)
        if info.frames == 0:
            raise AudioContentError(f"{args.input}: contains no audio samples")
        in_rate = info.sample_rate
        block_in = max(1, round(args.block_ms * in_rate / 1000))
        blocks = iter(audio.MonoReader(args.input, in_rate, block_frames=block_in))
        stem = Path(args.input).stem
    outputs = output_paths(f"{stem}.wav", out_dir, sources)
    down = None if in_rate == rate else soxr.ResampleStream(in_rate, rate, 1, dtype="float32")
    up = None if in_rate == rate else soxr.ResampleStream(rate, in_rate, sources, dtype="float32")
    out_dir.mkdir(parents=True, exist_ok=True)
    received = written = 0
    busy_cpu = busy_wall = 0.0

    def separate(samples: np.ndarray, last: bool) -> np.ndarray:
        """Model-rate mono in, (frames, C) at the input rate out; times the model."""
        nonlocal busy_cpu, busy_wall
        cpu, wall = time.process_time(), time.perf_counter()
        with torch.no_grad():
            out = engine.process(torch.from_numpy(np.ascontiguousarray(samples)))
            if last:
                out = torch.cat([out, engine.flush()], dim=-1)
        busy_cpu += time.process_time() - cpu
        busy_wall += time.perf_counter() - wall
        result = out[0].numpy().T  # (frames, C)
        return result if up is None else up.resample_chunk(result, last=last)

    # FLOAT samples: a stream cannot be peak-limited ahead of time, and nothing may clip.
    with audio.AtomicAudioWriter(
        outputs, in_rate, subtype="FLOAT", overwrite=args.overwrite
    ) as writer:
        for block in blocks:
            audio.check_finite(block, "stdin" if args.input == "-" else args.input)
            received += block.shape[0]
            chunk = separate(block if down is None else down.resample_chunk(block), False)
            chunk = chunk[: max(0, received - written)]  # never more than the input's length
            writer.write(chunk)
            written += chunk.shape[0]
        if received == 0:
            raise AudioContentError(f"{args.input}: contains no audio samples")
        tail = down.resample_chunk(np.zeros(0, np.float32), last=True) if down else np.zeros(0)
        chunk = audio.fit_length(separate(tail.astype(np.float32), True).T, received - written)
        writer.write(np.ascontiguousarray(chunk.T))
    seconds = received / in_rate
    for path in outputs:
        print(path)
    _report(engine, args.block_ms, seconds, busy_cpu, busy_wall)
    return 0


def _report(engine: Any, block_ms: float, seconds: float, cpu: float, wall: float) -> None:
    latency = 1000 * engine.latency_seconds
    print(
        f"algorithmic latency: {latency:g} ms (one STFT window), plus up to {block_ms:g} ms "
        "of block buffering"
    )
    print(
        f"real-time factor: {cpu / seconds:.3f} CPU, {wall / seconds:.3f} wall "
        f"(model time per second of audio, one thread; {seconds:.2f} s streamed)"
    )


def _stdin_blocks(raw_rate: int | None, block_ms: float) -> tuple[Iterator[np.ndarray], int]:
    """Mono float32 blocks from stdin and its rate: raw s16le at ``raw_rate``, else PCM WAV."""
    from ..errors import AudioReadError

    stream = sys.stdin.buffer
    if raw_rate is not None:
        return _raw_blocks(stream, raw_rate, block_ms), raw_rate
    try:
        reader = wave.open(stream, "rb")  # noqa: SIM115 (read lazily by the generator below)
    except (wave.Error, EOFError) as exc:
        raise AudioReadError(
            f"stdin: not a PCM WAV stream ({exc}); for raw 16-bit PCM pass --raw-rate RATE"
        ) from None
    width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
    if width not in _WAV_DTYPES:
        raise AudioReadError(f"stdin: {8 * width}-bit WAV is not supported; use 8, 16 or 32-bit")

    def blocks() -> Iterator[np.ndarray]:
        frames = max(1, round(block_ms * rate / 1000))
        scale = float(2 ** (8 * width - 1))
        while data := reader.readframes(frames):
            samples = np.frombuffer(data, _WAV_DTYPES[width]).astype(np.float32)
            if width == 1:
                samples -= 128.0
            yield (samples / scale).reshape(-1, channels).mean(axis=1, dtype=np.float32)

    return blocks(), rate


def _raw_blocks(stream: Any, rate: int, block_ms: float) -> Iterator[np.ndarray]:
    size = 2 * max(1, round(block_ms * rate / 1000))
    leftover = b""
    while data := stream.read(size):
        data = leftover + data
        usable = len(data) - len(data) % 2
        leftover = data[usable:]
        yield np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0


def _run_mic(args: argparse.Namespace, engine: Any, out_dir: Path) -> int:
    """Separate the default microphone live; write the sources, optionally play one."""
    import queue

    import torch

    from .. import audio
    from ..errors import TDANetError
    from ..separate import output_paths

    try:
        import sounddevice
    except ImportError:
        raise TDANetError(
            "--mic needs the optional sounddevice package: pip install sounddevice"
        ) from None
    if args.play is not None and not 1 <= args.play <= engine.num_sources:
        raise TDANetError(f"--play takes a source from 1 to {engine.num_sources}")
    rate = engine.sample_rate
    block = max(1, round(args.block_ms * rate / 1000))
    captured: queue.Queue[np.ndarray] = queue.Queue()

    def on_input(data: np.ndarray, _frames: int, _time: Any, _status: Any) -> None:
        captured.put(data[:, 0].copy())

    outputs = output_paths("mic.wav", out_dir, engine.num_sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    received, busy_cpu, busy_wall = 0, 0.0, 0.0
    limit = None if args.seconds is None else round(args.seconds * rate)
    speaker = (
        sounddevice.OutputStream(samplerate=rate, channels=1, dtype="float32")
        if args.play is not None
        else None
    )
    print("listening; press Ctrl-C to stop", file=sys.stderr)
    with (
        audio.AtomicAudioWriter(outputs, rate, subtype="FLOAT", overwrite=args.overwrite) as writer,
        sounddevice.InputStream(
            samplerate=rate, channels=1, dtype="float32", blocksize=block, callback=on_input
        ),
    ):
        if speaker is not None:
            speaker.start()
        try:
            while limit is None or received < limit:
                samples = captured.get()
                received += samples.shape[0]
                cpu, wall = time.process_time(), time.perf_counter()
                with torch.no_grad():
                    out = engine.process(torch.from_numpy(samples))
                busy_cpu += time.process_time() - cpu
                busy_wall += time.perf_counter() - wall
                writer.write(out[0].numpy().T.copy())
                if speaker is not None and out.shape[-1]:
                    speaker.write(out[0, args.play - 1].numpy().copy())
        except KeyboardInterrupt:
            pass  # stop listening; what was captured is still written
        writer.write(engine.flush()[0].numpy().T.copy())
    if speaker is not None:
        speaker.close()
    for path in outputs:
        print(path)
    _report(engine, args.block_ms, max(received, 1) / rate, busy_cpu, busy_wall)
    return 0
