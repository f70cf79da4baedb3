"""The automatic pairwise judge's prompts and verdict parsing.

S2S-Arena v1 was judged by people only (the paper promises an automatic judge later), so these
prompts are this project's, not the authors' (FIDELITY.md). They show the judge what the
annotators saw: the input's transcript, the task's description and evaluation target, and the
two anonymous replies ("Reply A", "Reply B"); a forced choice, as the annotators had.
"""

from __future__ import annotations

import re

from lm_eval_speech.calls.caller import rewritten

SYSTEM = (
    "You are an impartial judge of speech-to-speech assistants. You compare two spoken replies to the same "
    "spoken request and decide which one serves the user better, considering both what was said and, where "
    "you can tell, how it was said. Ignore the order in which the replies are shown and their length as such."
)

TEXT_PROMPT = """A user spoke a request to two voice assistants, and each answered in speech.

Task: {task_title}
Task description: {task_description}
Evaluation target: {evaluation_target}
The user's spoken request (transcript): {request}

Reply A (transcript of its speech): {reply_a}

Reply B (transcript of its speech): {reply_b}

Which reply better fulfils the request? There are no ties. Explain in one or two sentences, then give your verdict on the last line: [[A]] or [[B]]."""

AUDIO_PROMPT = """A user spoke a request to two voice assistants, and each answered in speech. You hear, in order: the user's request, Reply A, Reply B.

Task: {task_title}
Task description: {task_description}
Evaluation target: {evaluation_target}

Judge the content and the delivery (tone, emotion, pace, pronunciation, singing or sound imitation where the task asks for it). Which reply better fulfils the request? There are no ties. Explain in one or two sentences, then give your verdict on the last line: [[A]] or [[B]]."""

NOT_GIVEN = "(not given)"
_VERDICT = re.compile(r"\[\[\s*([AB])\s*\]\]")
# Lenient parsing (small local judges): a reply that starts with the letter, or names "Reply X".
_LEADING_LETTER = re.compile(r"^\W*([AB])\b")
_NAMED_REPLY = re.compile(r"\breply\s+([AB])\b", re.IGNORECASE)


def fields(doc: dict, request_transcript: str) -> dict:
    return {
        "task_title": doc.get("task_title") or doc.get("arena_task") or NOT_GIVEN,
        "task_description": doc.get("task_description") or NOT_GIVEN,
        "evaluation_target": doc.get("evaluation_target") or NOT_GIVEN,
        "request": request_transcript or NOT_GIVEN,
    }


def text_messages(doc: dict, request_transcript: str, reply_a: str, reply_b: str) -> list[dict]:
    prompt = TEXT_PROMPT.format(**fields(doc, request_transcript), reply_a=reply_a.strip() or "(silence)", reply_b=reply_b.strip() or "(silence)")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def audio_messages(doc: dict, request_wav_b64: str, reply_a_wav_b64: str, reply_b_wav_b64: str) -> list[dict]:
    prompt = AUDIO_PROMPT.format(**fields(doc, ""))
    content = [{"type": "text", "text": prompt}]
    for label, data in (("The user's request:", request_wav_b64), ("Reply A:", reply_a_wav_b64), ("Reply B:", reply_b_wav_b64)):
        content.append({"type": "text", "text": label})
        content.append({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]


def verdict(output: str, lenient: bool = False) -> str | None:
    """``"A"`` or ``"B"`` from the judge's last ``[[A]]``/``[[B]]``; None when it gave neither.

    ``lenient`` also takes a reply that starts with the letter, or else the first "Reply A/B" it
    names: for small local judges that do not keep to the format (never the default).
    """
    found = _VERDICT.findall(output or "")
    if found:
        return found[-1]
    if not lenient:
        return None
    match = _LEADING_LETTER.match(output or "") or _NAMED_REPLY.search(output or "")
    return match[1].upper() if match else None


# For judges with ``constrained: true``: a short reason and the winner, written back as the verdict
# the parser reads.
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string", "maxLength": 160}, "winner": {"enum": ["A", "B"]}},
    "required": ["reason", "winner"],
    "additionalProperties": False,
}


def in_verdict_format(output):
    """A constrained judge's JSON answer as ``reason [[A]]``; other outputs as they are."""
    return rewritten(output, lambda answer: f"{answer['reason']} [[{answer['winner']}]]")
