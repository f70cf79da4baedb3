"""A tiny random Moshi (``MoshiForConditionalGeneration`` with a tiny Mimi), saved like a hub checkpoint.

The layout is hf-moshiko's: model, tokenizer (``tokenizer.json``) and an ``EncodecFeatureExtractor``
at 24 kHz, so ``from_pretrained`` loads it offline. Mimi keeps the real frame rate (24 kHz, 1920
samples a frame: 12.5 Hz) with few filters and codebooks. The tokenizer keeps Kyutai's ids for the
silent tokens (0 ends padding, 3 pads) and holds only a dozen tokens, so the near-uniform text
stream of a random model is silent a third of the time: answers both start and stop.
"""

from __future__ import annotations

from pathlib import Path

# Kyutai's SentencePiece model opens with these, in this order.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
CORPUS = ["hi ho", "ho hi ha", "ha hi"] * 4


def build_tiny_moshi(out: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import EncodecFeatureExtractor, MoshiConfig, MoshiForConditionalGeneration
    from transformers import PreTrainedTokenizerFast

    torch.manual_seed(seed)
    pieces = Tokenizer(models.BPE(unk_token="<unk>"))
    pieces.pre_tokenizer, pieces.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()  # SentencePiece's "▁" words
    pieces.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=12, special_tokens=SPECIAL_TOKENS, show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=pieces, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    mimi = dict(
        model_type="mimi", sampling_rate=24000, hidden_size=16, num_filters=4, codebook_size=64, codebook_dim=16,
        vector_quantization_hidden_dimension=16, num_quantizers=4, upsample_groups=16, num_hidden_layers=1,
        intermediate_size=32, num_attention_heads=2, num_key_value_heads=2, head_dim=8,
    )
    config = MoshiConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, ffn_dim=64,
        num_codebooks=4, max_position_embeddings=3000, sliding_window=3000, pad_token_id=tokenizer.pad_token_id,
        audio_encoder_config=mimi,
        depth_decoder_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
                                  max_position_embeddings=5, sliding_window=5),
    )
    model = MoshiForConditionalGeneration(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    EncodecFeatureExtractor(feature_size=1, sampling_rate=24000).save_pretrained(out)
    return out
