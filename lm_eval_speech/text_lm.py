"""Local transformers causal LMs (a folder or a ``.gguf`` file), loaded once per process.

The cascade's answering LLM and the in-process judge both load through here, so a run that uses
the same checkpoint for both holds one copy in memory. transformers dequantises a GGUF file on
every load (20-60 s for SmolLM2-135M on 2 cores); the dequantised weights are kept in the user's
cache directory and later loads read them in about a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from lm_eval_speech.bundled import resolve_bundled
from lm_eval_speech.paths import cache_root

logger = logging.getLogger("lm_eval_speech.text_lm")

_LOADED: dict[tuple, LocalTextLM] = {}
_LOAD_LOCK = threading.Lock()


@dataclass
class LocalTextLM:
    tokenizer: object
    model: object
    name: str  # folder, or folder/file.gguf


def split_gguf(path: str | Path, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a folder, a folder + file name, or a ``.gguf`` path."""
    path = resolve_bundled(str(path))
    if path.suffix == ".gguf":
        return path.parent, path.name
    return path, gguf_file


def load_text_lm(path: str | Path, *, gguf_file: str | None = None, dtype=None, device=None) -> LocalTextLM:
    """Tokenizer (left padding, a pad token) and eval-mode model; shared by every caller in this process."""
    import torch
    import transformers

    folder, gguf_file = split_gguf(path, gguf_file)
    device = torch.device(device or "cpu")
    dtype = dtype if dtype is not None else torch.float32
    key = (str(folder.resolve()), gguf_file, str(dtype), str(device))
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if not folder.exists():
            raise FileNotFoundError(f"local LM {folder} does not exist")
        name = f"{folder}/{gguf_file}" if gguf_file else str(folder)
        load: dict = {}
        if gguf_file:
            folder = dequantized_copy(folder / gguf_file)
        logger.info("loading local LM %s on %s", name, device)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **load)
        tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **load)
        model.to(device).eval()
        _LOADED[key] = LocalTextLM(tokenizer, model, name)
        return _LOADED[key]


def dequantized_copy(gguf: Path) -> Path:
    """A transformers folder holding ``gguf`` dequantised to float32, made once and reused.

    Keyed by the file's path, size and mtime and the transformers version; written to a
    temporary folder and renamed, so concurrent processes never read a half-written copy.
    """
    import torch
    import transformers

    stat = gguf.stat()
    identity = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    target = cache_root() / "dequantized" / hashlib.sha256(identity.encode()).hexdigest()[:20]
    if (target / "config.json").is_file():
        return target
    logger.info("dequantising %s once (kept in %s)", gguf, target)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained; a plain copy of its weights does not.
    plain = transformers.AutoModelForCausalLM.from_config(quantized.config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    if getattr(plain.config, "quantization_config", None) is not None:
        del plain.config.quantization_config  # the copy is plain float32: no GGUF loader on reload
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        (scratch / "SOURCE").write_text(identity + "\n", encoding="utf-8")
        os.replace(scratch, target)
    except OSError:
        if not (target / "config.json").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
