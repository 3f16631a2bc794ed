"""Spoken summaries of the lessons, rendered to audio when the book is built.

A lesson ``<lesson>.ipynb`` may have a script written for listening beside it,
``<lesson>.narration.txt``: plain sentences, formulas read out in words, no
code. The eSpeak NG library and its voice data come from the PyPI package
``espeakng-loader`` (the ``book`` extra); it is called through ctypes in
synchronous mode and the samples are written with :mod:`wave` as
``<lesson>.narration.wav`` next to the lesson's page. When the engine cannot be
loaded the build says so once and the pages are written without a player.
"""

from __future__ import annotations

import ctypes
import functools
import wave
from pathlib import Path

import numpy as np
from sphinx.util import logging

logger = logging.getLogger(__name__)

VOICE = b"en-us"
WORDS_PER_MINUTE = 165
# eSpeak NG speaks at 22050 Hz; every second sample (averaged in pairs) keeps speech clear at half the size.
DECIMATE = 2

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Speech:
    """eSpeak NG, loaded once per process, turning text into 16-bit mono samples."""

    def __init__(self):
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        self.rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.rate <= 0:
            raise OSError(f"espeak_Initialize returned {self.rate}")
        if lib.espeak_SetVoiceByName(VOICE) != 0:
            raise OSError(f"eSpeak NG has no voice {VOICE.decode()}")
        lib.espeak_SetParameter(_ESPEAK_RATE, WORDS_PER_MINUTE, 0)
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept alive as long as the library may call it
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        return 0

    def samples(self, text: str) -> np.ndarray:
        self._chunks = []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise OSError(f"espeak_Synth returned {status}")
        self._lib.espeak_Synchronize()
        return np.frombuffer(b"".join(self._chunks), dtype="<i2")


@functools.lru_cache(maxsize=1)
def engine() -> tuple[Speech | None, str]:
    """The speech engine, or None and the reason it cannot be used."""
    try:
        return Speech(), ""
    except (ImportError, OSError, AttributeError, RuntimeError) as err:
        return None, f"{type(err).__name__}: {err}"


def write_wav(path: Path, samples: np.ndarray, rate: int) -> float:
    """Write 16-bit mono samples, halving the rate by averaging pairs; return the duration in seconds."""
    n = len(samples) // DECIMATE * DECIMATE
    pairs = samples[:n].astype(np.int32).reshape(-1, DECIMATE)
    out = (pairs.sum(axis=1) // DECIMATE).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate // DECIMATE)
        w.writeframes(out.tobytes())
    return len(out) / (rate // DECIMATE)


def script_path(srcdir, docname: str) -> Path:
    return Path(srcdir) / f"{docname}.narration.txt"


_said_unavailable = False


def planned_audio(app, docname: str) -> str | None:
    """Where the lesson's audio will be written (relative to the html folder), or None."""
    global _said_unavailable
    if not script_path(app.srcdir, docname).is_file():
        return None
    speech, reason = engine()
    if speech is None:
        if not _said_unavailable:
            logger.info(f"[companion] no speech engine ({reason}): pages are built without audio")
            _said_unavailable = True
        return None
    return f"{docname}.narration.wav"


def up_to_date(wav: Path, script: Path) -> bool:
    """True when ``wav`` was written after the script and after this module (voice, rate) last changed."""
    if not wav.is_file():
        return False
    return wav.stat().st_mtime >= max(script.stat().st_mtime, Path(__file__).stat().st_mtime)


def render_all(app, audio: dict[str, str]) -> None:
    """Write each lesson's audio; a build with ``--all`` re-synthesizes only what changed."""
    speech, _ = engine()
    if speech is None:
        return
    for docname, rel in sorted(audio.items()):
        script, wav = script_path(app.srcdir, docname), Path(app.outdir) / rel
        if up_to_date(wav, script):
            continue
        write_wav(wav, speech.samples(script.read_text(encoding="utf-8")), speech.rate)
