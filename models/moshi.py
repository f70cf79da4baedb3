"""Moshi (transformers ``MoshiForConditionalGeneration``): a full-duplex speech-to-speech model.

Moshi hears and speaks at once, in frames of 80 ms (Mimi's 12.5 Hz: one text token and one audio
frame of 1920 samples at 24 kHz per step). One request is one conversation:

1. The user's clip (clips of a request are joined in prompt order), downmixed and resampled to
   Mimi's 24 kHz, is Moshi's input stream; Moshi is silent meanwhile (its own audio stream is
   silence and its text stream padding), as in the model card's example.
2. After the clip the user stays silent (transformers feeds silence codes) and Moshi answers:
   each step yields a text token (its "inner monologue") and an audio frame.
3. **Stop rule.** The text stream says when Moshi speaks: a word piece while speaking, padding
   while silent (Kyutai's padding id 3 and end-of-padding id 0, and every other special token).
   The answer ends once Moshi has spoken and then stayed silent for ``silence_seconds`` (default
   2.0 s = 25 steps), or after ``max_answer_seconds`` (default 30 s = 375 steps at 12.5 Hz), or
   earlier where Moshi's context (``max_position_embeddings`` steps: 3000 = 4 min) runs out;
   an answer that never starts runs to that cap. A clip that leaves no room in the context is a
   failed generation (counted, not scored).
4. The spoken answer is Moshi's audio from the end of the clip to the stop: the silence window
   included, less its last two steps (Moshi's acoustic codes come one step after its text, and the
   last step makes none; two extra steps are generated so that a capped answer holds exactly
   ``max_answer_seconds`` of audio). The text answer is its text stream from the same point with
   the silent tokens removed, decoded by its tokenizer, or with ``text_answer=transcript`` the
   ASR transcript of that audio (the speech-output convention's transcriber: ``speech_asr``,
   default the bundled Whisper). Tasks that ask for text only get the same text answer (the
   audio is then not decoded, unless it is to be transcribed).

Moshi cannot follow a text prompt: text besides ``<audio>`` is ignored with one warning per task
(``text_prompt=refuse`` stops with an error naming the doc instead). The task's ``max_gen_toks``
does not apply: Moshi's steps are time, so ``max_answer_seconds`` bounds the answer.

Decoding: ``sampling=kyutai`` (default) samples as Kyutai's reference inference does (its
``LMGen`` defaults: text temperature 0.7, top-k 25; audio temperature 0.8, top-k 250), whatever
the task asks (the tasks here ask for greedy decoding, which Kyutai's inference does not use); a warning
says so once. ``sampling=task`` decodes the text stream with the task's gen_kwargs instead; the
audio codes (the depth decoder) keep Kyutai's sampling. Each conversation is seeded with the
task's ``seed`` gen_kwarg, else the model_arg ``seed`` (0), so a run repeats.

Batching: one conversation at a time. ``generate`` takes a batch only of clips of one length
(padding a clip with silence would change what Moshi hears), so ``batch_size`` is set to 1.

Latency: the first text is the first word piece of the stream (timed as it is generated);
transformers decodes the audio only when generation ends, so the first audio is recorded at the
end (``first_audio_at_end``).

``--model_args`` keys: ``pretrained`` (default ``kmhf/hf-moshiko``), ``revision``, ``dtype``,
``device``, ``attn_implementation``, ``max_answer_seconds``, ``silence_seconds``, ``text_answer``
(``stream`` | ``transcript``), ``text_prompt`` (``ignore`` | ``refuse``), ``sampling``
(``kyutai`` | ``task``), ``seed``, and the speech-output convention's ``speech_output``,
``speech_dir``, ``speech_asr``, ``speech_asr_language``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import lm_eval.models  # noqa: F401  (fills the built-in registry first; see lm-eval-notes §1.1)
import numpy as np
from lm_eval.api.registry import register_model

from lm_eval_speech.models._base import AUDIO_PLACEHOLDER, SpeechLM, logger, request_where, resolve_dtype
from lm_eval_speech.outcomes import failed
from lm_eval_speech.speech.audio import clip_array
from lm_eval_speech.speech.latency import Timing
from lm_eval_speech.speech.output import SpokenAnswer

# Kyutai's text stream: 3 pads a silent step, 0 ends a run of padding just before a word.
MOSHI_PAD_ID = 3
MOSHI_END_OF_PADDING_ID = 0
TEXT_ANSWERS = ("stream", "transcript")
TEXT_PROMPTS = ("ignore", "refuse")
SAMPLINGS = ("kyutai", "task")
# Kyutai's LMGen defaults (moshi/models/lm.py); the depth_decoder_ ones go to the audio codes.
KYUTAI_TEXT_SAMPLING = {"do_sample": True, "temperature": 0.7, "top_k": 25}
KYUTAI_AUDIO_SAMPLING = {"depth_decoder_do_sample": True, "depth_decoder_temperature": 0.8, "depth_decoder_top_k": 250}
ENDED_BY_SILENCE = "silence"
ENDED_BY_CAP = "max_duration"


def _positive_seconds(value, name: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"MoshiLM model_args {name}={value!r}: expected a positive number of seconds")
    return seconds


def _choice(value, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"MoshiLM model_args {name}={value!r}: expected one of {', '.join(choices)}")
    return value


class SpeechEnd:
    """The stop rule, as a transformers stopping criterion over the text stream (one token per step).

    Moshi speaks at a step whose text token is not silent; the answer ends once it has spoken and
    then stayed silent for ``silence_frames`` steps. Also notes when the first word piece came.
    """

    def __init__(self, answer_start: int, silent_ids: set[int], silence_frames: int) -> None:
        self.answer_start, self.silent_ids, self.silence_frames = answer_start, frozenset(silent_ids), silence_frames
        self.first_word_at: float | None = None
        self.trailing_silence = 0
        self.ended = False

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if input_ids.shape[1] > self.answer_start:  # a step of the answer, not the prompt
            if int(input_ids[0, -1]) in self.silent_ids:
                self.trailing_silence += 1
            else:
                self.trailing_silence = 0
                if self.first_word_at is None:
                    self.first_word_at = time.perf_counter()
            self.ended = self.first_word_at is not None and self.trailing_silence >= self.silence_frames
        return torch.full((input_ids.shape[0],), self.ended, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class Conversation:
    """One answer: Moshi's streams from the end of the user's clip to the stop."""

    prompt_frames: int  # the user's clip, in steps
    text_ids: list[int]  # one text token per step
    audio: np.ndarray | None  # float32 at 24 kHz; None when not decoded
    ended_by: str  # ENDED_BY_SILENCE or ENDED_BY_CAP
    timing: Timing


@register_model("moshi")
class MoshiLM(SpeechLM):
    SPEAKS = True

    def __init__(
        self,
        pretrained: str = "kmhf/hf-moshiko",
        revision: str | None = None,
        dtype: str | None = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        attn_implementation: str | None = None,
        max_answer_seconds: float = 30.0,
        silence_seconds: float = 2.0,
        text_answer: str = "stream",
        text_prompt: str = "ignore",
        sampling: str = "kyutai",
        seed: int = 0,
        **kwargs,
    ) -> None:
        # Settings first: a typo should not wait for a 7B checkpoint to load.
        self.max_answer_seconds = _positive_seconds(max_answer_seconds, "max_answer_seconds")
        self.silence_seconds = _positive_seconds(silence_seconds, "silence_seconds")
        self.text_answer = _choice(text_answer, TEXT_ANSWERS, "text_answer")
        self.text_prompt = _choice(text_prompt, TEXT_PROMPTS, "text_prompt")
        self.sampling = _choice(sampling, SAMPLINGS, "sampling")
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise ValueError(f"MoshiLM model_args seed={seed!r}: expected an integer") from None
        super().__init__(device=device, batch_size=batch_size, **kwargs)
        if self.batch_size != 1:
            logger.warning("MoshiLM: batch_size=%d: Moshi holds one conversation at a time, so it runs with 1", self.batch_size)
            self.batch_size = 1
        self.pretrained = pretrained
        self._load(pretrained, revision, dtype, attn_implementation)
        self._warned_tasks: set[str] = set()
        self._warned_sampling = False

    def _load(self, pretrained: str, revision: str | None, dtype: str | None, attn_implementation: str | None) -> None:
        import transformers

        load = {"revision": revision, "dtype": resolve_dtype(dtype, self.device)}
        if attn_implementation:
            load["attn_implementation"] = attn_implementation
        self.model = transformers.MoshiForConditionalGeneration.from_pretrained(pretrained, **load).to(self.device).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained, revision=revision)
        self.feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(pretrained, revision=revision)
        config = self.model.config
        self.sampling_rate = int(config.sampling_rate)
        self.frame_rate = float(config.audio_encoder_config.frame_rate)
        self.samples_per_frame = round(self.sampling_rate / self.frame_rate)
        self.context_frames = int(config.max_position_embeddings)
        self.max_answer_frames = max(1, round(self.max_answer_seconds * self.frame_rate))
        self.silence_frames = max(1, round(self.silence_seconds * self.frame_rate))
        pad = self.tokenizer.pad_token_id
        self.pad_id = MOSHI_PAD_ID if pad is None else int(pad)
        # config.vocab_size is the stream's start token, never a word
        self.silent_ids = {self.pad_id, MOSHI_END_OF_PADDING_ID, int(config.vocab_size), *self.tokenizer.all_special_ids}

    # -- requests ----------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False):
        for request in requests:  # before any generation: a refusal should not come mid-run
            self._check_prompt(request)
        return super().generate_until(requests, disable_tqdm=disable_tqdm)

    def _check_prompt(self, request) -> None:
        text = request.args[0].replace(AUDIO_PLACEHOLDER, "").strip()
        if not text:
            return
        if self.text_prompt == "refuse":
            raise ValueError(f"MoshiLM: {request_where(request)} has prompt text besides {AUDIO_PLACEHOLDER} ({text[:80]!r}), "
                             "which Moshi cannot read (text_prompt=refuse; text_prompt=ignore answers the audio alone)")
        task = str(request.task_name)
        if task not in self._warned_tasks:
            self._warned_tasks.add(task)
            logger.warning("MoshiLM: task %s has prompt text besides %s (%r): Moshi hears only the audio, so it is ignored",
                           task, AUDIO_PLACEHOLDER, text[:80])

    def _generate_batch(self, requests, params):
        answers = []
        for request in requests:
            conversation = self._converse(request, params, decode_audio=self.text_answer == "transcript")
            answers.append(conversation if not isinstance(conversation, Conversation) else self._text(conversation))
        return answers

    def _speak_batch(self, requests, params):
        answers = []
        for request in requests:
            conversation = self._converse(request, params, decode_audio=True)
            if isinstance(conversation, Conversation):
                conversation = SpokenAnswer(self._text(conversation), conversation.audio, self.sampling_rate, conversation.timing)
            answers.append(conversation)
        return answers

    def _text(self, conversation: Conversation) -> str:
        if self.text_answer == "transcript":
            return self.speech.transcribe(conversation.audio, self.sampling_rate)
        words = [token for token in conversation.text_ids if token not in self.silent_ids]
        return self.tokenizer.decode(words).strip()

    # -- one conversation --------------------------------------------------------------------
    def _user_audio(self, request):
        where = request_where(request)
        clips = [clip_array(clip, self.sampling_rate, item=where) for clip in request.args[2]["audio"]]
        features = self.feature_extractor(raw_audio=np.concatenate(clips), sampling_rate=self.sampling_rate, return_tensors="pt")
        return features["input_values"].to(self.device, dtype=self.model.dtype)

    def _sampling_kwargs(self, params) -> dict:
        if self.sampling == "task":
            kwargs = params.to_transformers()
            text = {k: v for k, v in kwargs.items() if k not in ("max_new_tokens", "num_return_sequences", "min_new_tokens")}
            return {**text, **KYUTAI_AUDIO_SAMPLING}
        if params.temperature is not None and not self._warned_sampling:
            self._warned_sampling = True
            logger.warning("MoshiLM: Moshi samples as Kyutai's reference inference does (sampling=kyutai: text temperature 0.7, "
                           "top-k 25); the task's decoding settings are not used (sampling=task uses them for the text)")
        return {**KYUTAI_TEXT_SAMPLING, **KYUTAI_AUDIO_SAMPLING}

    def _converse(self, request, params, decode_audio: bool):
        """Moshi's answer to one request's audio, or a FailedGeneration when the clip fills its context."""
        import torch
        from transformers import StoppingCriteriaList

        user = self._user_audio(request)
        prompt_frames = math.ceil(user.shape[-1] / self.samples_per_frame)
        answer_start = prompt_frames + 1  # the text stream opens with its start token
        # The audio lags the text by two steps (the acoustic codebooks are delayed by one, and the
        # last step's codes are never made): two more steps give max_answer_frames of audio.
        steps = min(self.max_answer_frames + 2, self.context_frames - answer_start)
        if steps < 3:
            return failed(str(request.task_name), request_where(request),
                          f"the clip ({user.shape[-1] / self.sampling_rate:.1f} s) leaves no room for an answer in Moshi's context "
                          f"of {self.context_frames / self.frame_rate:.0f} s")
        end = SpeechEnd(answer_start, self.silent_ids, self.silence_frames)
        sampling = self._sampling_kwargs(params)
        torch.manual_seed(params.seed if params.seed is not None else self.seed)
        started = time.perf_counter()
        with torch.inference_mode():
            # transformers decodes the audio only of a generation that ran to max_new_tokens (one that
            # stops earlier fails on its full-length delay mask), so the codes are decoded here.
            sequences = self.model.generate(
                input_ids=torch.full((1, prompt_frames), self.pad_id, dtype=torch.long, device=self.device),
                user_input_values=user, moshi_input_values=torch.zeros_like(user), max_new_tokens=steps,
                stopping_criteria=StoppingCriteriaList([end]), return_audio_waveforms=False, return_audio_codes=False,
                **sampling,
            )
            audio = self._answer_audio(prompt_frames) if decode_audio else None
        total = time.perf_counter() - started
        ended_by = ENDED_BY_SILENCE if end.ended else ENDED_BY_CAP
        text_ids = [int(token) for token in sequences[0, answer_start:]]
        logger.debug("MoshiLM: %s: %d steps after a %d-step clip, ended by %s", request_where(request), len(text_ids),
                     prompt_frames, ended_by)
        first_text = None if end.first_word_at is None else end.first_word_at - started
        return Conversation(prompt_frames, text_ids, audio, ended_by, Timing(total_s=total, first_text_s=first_text))

    def _answer_audio(self, prompt_frames: int) -> np.ndarray:
        """Moshi's audio after the user's clip, from the codes the last ``generate`` left on the model.

        ``generated_audio_codes`` holds one column per step (the start column first), the acoustic
        codebooks one step behind the semantic one: frame j is semantic column j+1 with acoustic
        column j+2. Decoded from the start, as transformers does, then cut at the clip's end.
        """
        import torch

        codes = getattr(self.model, "generated_audio_codes", None)
        if codes is None:
            raise RuntimeError("MoshiLM: this transformers version keeps no generated_audio_codes on the model after generate")
        columns = codes.shape[-1]
        frames = torch.cat([codes[:, :1, 1 : columns - 1], codes[:, 1:, 2:columns]], dim=1)
        waveform = self.model.audio_encoder.decode(frames).audio_values
        return waveform[0, 0, prompt_frames * self.samples_per_frame :].float().cpu().numpy()

    # -- reporting ---------------------------------------------------------------------------
    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "frame_rate": self.frame_rate, "max_answer_seconds": self.max_answer_seconds,
                "silence_seconds": self.silence_seconds, "text_answer": self.text_answer, "sampling": self.sampling}
