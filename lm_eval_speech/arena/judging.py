"""Automatic battles: which pairs meet, and a judge's verdict on each, in both orders.

Every battle is judged twice, with the replies shown as (A, B) and then as (B, A). Agreeing
verdicts make a win; disagreeing ones (position bias) make a tie, or, with
``swap_policy="rejudge"``, both orders are asked once more (a second sample) and a pair that
still disagrees is a tie. A failed call or a reply without ``[[A]]``/``[[B]]`` leaves the
battle unjudged: it is listed with its reason and never rated.

Calls go through the call layer (lm_eval_speech.calls), so every verdict lands in its SQLite cache: adding a model
to an arena pays only for the battles that model is in.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_speech.arena import prompts
from lm_eval_speech.arena.battles import Battle
from lm_eval_speech.arena.ratings import online_elo
from lm_eval_speech.arena.runs import Answer, ModelRun
from lm_eval_speech.calls import Caller, CallCache, CallConfig, CallRequest, CallStats
from lm_eval_speech.calls.config import template_sha256

logger = logging.getLogger("lm_eval_speech.arena")

SWAP_POLICIES = ("tie", "rejudge")
DEFAULT_TEXT_JUDGE = {"model": "gpt-4o-mini", "temperature": 0.0, "max_tokens": 256}
# Tasks whose evaluation target is how the reply sounds (paper: L2/L3 paralinguistic output):
# the audio judge, when one is given, hears these battles.
PARALINGUISTIC_TASKS = frozenset({
    "pronunciation", "stress", "rhythm", "pause", "translation", "emotion", "identity", "sing", "nature",
    "poetry", "role", "story", "tongue_twister", "crosstalk",
})
AUDIO_RATE = 16000


@dataclass(frozen=True)
class Matchup:
    input_id: str
    model_1: str
    model_2: str


@dataclass
class Unjudged:
    matchup: Matchup
    reason: str


@dataclass
class JudgingSummary:
    battles: list[Battle] = field(default_factory=list)
    unjudged: list[Unjudged] = field(default_factory=list)
    inconsistent: int = 0
    rejudged: int = 0
    stats: dict[str, tuple[CallStats, tuple | None]] = field(default_factory=dict)  # judge -> (accounting, prices)
    by_judge: Counter = field(default_factory=Counter)


def matchups(runs: list[ModelRun]) -> list[Matchup]:
    """Every pair of models on every input both answered in speech, in a fixed order."""
    inputs = sorted({i for run in runs for i in run.answers})
    labels = sorted(run.label for run in runs)
    by_label = {run.label: run for run in runs}
    return [
        Matchup(input_id, a, b)
        for input_id in inputs
        for a, b in itertools.combinations(labels, 2)
        if input_id in by_label[a].answers and input_id in by_label[b].answers
    ]


def select(candidates: list[Matchup], budget: int | None, seed: int = 0, prior: list[Battle] = ()) -> list[Matchup]:
    """All candidates, or ``budget`` of them chosen to be informative.

    Informative (the paper's Elo-based selection is unspecified): pairs that met least so far
    first, then pairs closest in online Elo (from ``prior`` battles), ties broken by a seeded
    shuffle; one pick at a time, so the counts move as the budget fills.
    """
    if budget is None or budget >= len(candidates):
        return list(candidates)
    rng = random.Random(seed)
    pool = list(candidates)
    rng.shuffle(pool)
    ratings = online_elo(list(prior)) if prior else {}
    met = Counter(frozenset((b.model_a, b.model_b)) for b in prior)
    chosen = []
    for _ in range(max(budget, 0)):
        best = min(
            range(len(pool)),
            key=lambda i: (met[frozenset((pool[i].model_1, pool[i].model_2))],
                           abs(ratings.get(pool[i].model_1, 1000.0) - ratings.get(pool[i].model_2, 1000.0))),
        )
        pick = pool.pop(best)
        met[frozenset((pick.model_1, pick.model_2))] += 1
        chosen.append(pick)
    return chosen


def prompt_hashes() -> dict[str, str]:
    """SHA-256 of each judge prompt, for the leaderboard's record of what produced it."""
    return {name: template_sha256(text) for name, text in
            (("system", prompts.SYSTEM), ("text", prompts.TEXT_PROMPT), ("audio", prompts.AUDIO_PROMPT))}


class BattleJudge:
    def __init__(self, text_judge: CallConfig, *, audio_judge: CallConfig | None = None,
                 audio_tasks: frozenset[str] = PARALINGUISTIC_TASKS, swap_policy: str = "tie",
                 cache: CallCache | None = None, request_transcriber=None, lenient: bool = False) -> None:
        if swap_policy not in SWAP_POLICIES:
            raise ValueError(f"arena: swap_policy must be one of {', '.join(SWAP_POLICIES)}, not {swap_policy!r}")
        if audio_judge is not None and audio_judge.backend != "openai":
            raise ValueError("arena: the audio judge must be an OpenAI-compatible audio chat model (backend openai)")
        self.text_judge, self.audio_judge = text_judge, audio_judge
        self.audio_tasks, self.swap_policy, self.cache = frozenset(audio_tasks), swap_policy, cache
        self.transcribe, self.lenient = request_transcriber, lenient

    def judge(self, picked: list[Matchup], runs: list[ModelRun]) -> JudgingSummary:
        by_label = {run.label: run for run in runs}
        summary = JudgingSummary()
        groups: dict[str, list[Matchup]] = {"text": [], "audio": []}
        for matchup in picked:
            answer = by_label[matchup.model_1].answers[matchup.input_id]
            groups["audio" if self.audio_judge is not None and answer.task in self.audio_tasks else "text"].append(matchup)
        for mode, items in groups.items():
            if items:
                self._judge_group(mode, items, by_label, summary)
        order = {m: i for i, m in enumerate(picked)}
        summary.battles.sort(key=lambda b: order[Matchup(b.input_id, b.model_a, b.model_b)])
        return summary

    def _judge_group(self, mode: str, items: list[Matchup], by_label: dict[str, ModelRun], summary: JudgingSummary) -> None:
        config = self.audio_judge if mode == "audio" else self.text_judge
        requests, ready = [], []
        for matchup in items:
            first = by_label[matchup.model_1].answers[matchup.input_id]
            second = by_label[matchup.model_2].answers[matchup.input_id]
            label = f"{matchup.input_id}: {matchup.model_1} vs {matchup.model_2}"
            try:
                orders = [self._messages(mode, first, second), self._messages(mode, second, first)]
            except (OSError, ValueError) as error:  # an audio file gone or unreadable: this battle only
                summary.unjudged.append(Unjudged(matchup, f"cannot build the judge prompt: {error}"))
                continue
            requests += [CallRequest(orders[0], f"{label} (order 1)", prompts.VERDICT_SCHEMA),
                         CallRequest(orders[1], f"{label} (order 2)", prompts.VERDICT_SCHEMA)]
            ready.append(matchup)
        items = ready
        if not items:
            return
        outputs = self._run(config, requests, n=1, summary=summary)
        retry = []
        results = {}
        for index, matchup in enumerate(items):
            orders = [outputs[2 * index][0], outputs[2 * index + 1][0]]
            results[matchup] = orders
            winners = self._winners(matchup, orders)
            if isinstance(winners, tuple) and winners[0] != winners[1] and self.swap_policy == "rejudge":
                retry.append(index)
        if retry:
            again = self._run(config, [r for i in retry for r in (requests[2 * i], requests[2 * i + 1])], n=2, summary=summary)
            for position, index in enumerate(retry):
                results[items[index]] += [again[2 * position][1], again[2 * position + 1][1]]
            summary.rejudged += len(retry)
        for matchup in items:
            self._settle(matchup, results[matchup], config, mode, by_label, summary)

    def _run(self, config: CallConfig, requests: list[CallRequest], n: int, summary: JudgingSummary):
        from dataclasses import replace

        caller = Caller(replace(config, params=config.params.with_n(n), n_mode="repeat"), self.cache)
        outputs = caller.run(requests, desc=f"arena judge {config.name}")
        if config.constrained:  # a JSON verdict, written back as the [[A]]/[[B]] the parser reads
            outputs = [[prompts.in_verdict_format(o) for o in row] for row in outputs]
        stats, prices = summary.stats.setdefault(config.name, (CallStats(), config.prices()))
        stats.add(caller.stats)
        return outputs

    def _winners(self, matchup: Matchup, orders) -> tuple[str, str] | str:
        """The winner named by each order, or the reason the pair is unjudged."""
        named = []
        for position, output in enumerate(orders[:2]):
            if not output.ok:
                return f"order {position + 1}: judge call failed: {output.error}"
            choice = prompts.verdict(output.text, self.lenient)
            if choice is None:
                return f"order {position + 1}: no [[A]] or [[B]] in the judge's reply: {output.text[-200:]!r}"
            first_is_a = position == 0
            named.append(matchup.model_1 if (choice == "A") == first_is_a else matchup.model_2)
        return named[0], named[1]

    def _settle(self, matchup, outputs, config, mode, by_label, summary) -> None:
        winners = self._winners(matchup, outputs[:2])
        if isinstance(winners, str):
            summary.unjudged.append(Unjudged(matchup, winners))
            return
        consistent = winners[0] == winners[1]
        if not consistent and len(outputs) == 4:
            second = self._winners(matchup, outputs[2:])
            if isinstance(second, tuple) and second[0] == second[1]:
                winners, consistent = second, True
        if not (winners[0] == winners[1]):
            summary.inconsistent += 1
        winner = ("model_a" if winners[0] == matchup.model_1 else "model_b") if consistent else "tie"
        answer = by_label[matchup.model_1].answers[matchup.input_id]
        detail = {
            "mode": mode, "consistent": consistent,
            "verdicts": [prompts.verdict(o.text, self.lenient) if o.ok else None for o in outputs],
            "outputs": [o.text for o in outputs],
        }
        summary.battles.append(Battle(
            model_a=matchup.model_1, model_b=matchup.model_2, winner=winner, input_id=matchup.input_id,
            domain=answer.domain, task=answer.task, level=answer.level, category=answer.category,
            source="judge", judge=config.name,
            detail=json.dumps(detail, ensure_ascii=False),
        ))
        summary.by_judge[config.name] += 1

    def _messages(self, mode: str, reply_a: Answer, reply_b: Answer) -> list[dict]:
        doc = reply_a.doc
        if mode == "audio":
            return prompts.audio_messages(doc, _wav_b64(doc.get("audio_file", "")), _wav_b64(reply_a.speech["path"]),
                                          _wav_b64(reply_b.speech["path"]))
        request = doc.get("transcript") or (self.transcribe(doc) if self.transcribe else "")
        return prompts.text_messages(doc, request, reply_a.spoken_text, reply_b.spoken_text)


def _wav_b64(path: str) -> str:
    from lm_eval_speech.speech.audio import encode_wav, load_audio

    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"arena: audio file {path!r} not found (the audio judge needs every clip)")
    array, rate = load_audio(path, target_sr=AUDIO_RATE, item=path)
    return base64.b64encode(encode_wav(array, rate)).decode("ascii")
