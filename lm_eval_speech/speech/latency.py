"""How long a spoken answer took: time to first text and first audio, generation time, real-time factor.

Every speech-out model reports a :class:`Timing` per answer (seconds from the start of its
generation). A streaming backend measures the first text token and the first audio chunk as they
arrive (``streamed=True``); a backend that hands over the audio only when it is done reports its
first audio at the end of generation (``streamed=False``: the record says so). A batched local
model times the batch: every answer of a batch carries the batch's figures, and its size.

:func:`record` is what lands in the logged sample (``speech_output[i]["latency"]``); the
aggregations (:func:`median` / :func:`p90` of each field) are what a speech-out task reports, with
the device and batch sizes they were measured at recorded in its provenance.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

FIELDS = ("first_text_s", "first_audio_s", "total_s", "rtf")


@dataclass(frozen=True)
class Timing:
    total_s: float  # generation, start to end
    first_text_s: float | None = None  # the first text token (None: the backend cannot tell)
    first_audio_s: float | None = None  # the first audio chunk (None: at the end of generation)
    streamed: bool = False  # the first_* figures were measured on a stream
    batch_size: int | None = None  # the batch it was generated in, where not the scheduled batch (a fallback)


def record(timing: Timing, audio_s: float, batch_size: int, device: str | None) -> dict:
    """The latency fields of one spoken answer; rtf = generation time / audio duration."""
    first_audio = timing.first_audio_s if timing.first_audio_s is not None else timing.total_s
    return {
        "first_text_s": _round(timing.first_text_s),
        "first_audio_s": _round(first_audio),
        "total_s": _round(timing.total_s),
        "audio_s": _round(audio_s),
        "rtf": _round(timing.total_s / audio_s) if audio_s > 0 else None,
        "streamed": timing.streamed,
        "first_audio_at_end": timing.first_audio_s is None,
        "batch_size": int(batch_size),
        "device": device,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def values(records: list, field: str) -> list[float]:
    return [r[field] for r in records if isinstance(r, dict) and r.get(field) is not None]


def median(numbers: list[float]) -> float:
    return statistics.median(numbers) if numbers else float("nan")


def p90(numbers: list[float]) -> float:
    """The 90th percentile (linear interpolation between order statistics)."""
    if not numbers:
        return float("nan")
    if len(numbers) == 1:
        return float(numbers[0])
    return statistics.quantiles(numbers, n=10, method="inclusive")[-1]


# Aggregations for a speech-out task's YAML: each metric's per-answer value is the answer's latency
# record (with its task's name, for the provenance), None where no answer was spoken.
def _aggregate(field: str, summary):
    def aggregate(items: list) -> float:
        records = [r for r in items if isinstance(r, dict)]
        if records and records[0].get("task"):
            from lm_eval_speech import provenance

            provenance.record(records[0]["task"], latency_measured_at=measured_at(records))
        return summary(values(records, field))

    aggregate.__name__ = f"{field}_{summary.__name__}"
    aggregate.__doc__ = f"The {summary.__name__} of the spoken answers' {field}."
    return aggregate


first_text_s_median, first_text_s_p90 = _aggregate("first_text_s", median), _aggregate("first_text_s", p90)
first_audio_s_median, first_audio_s_p90 = _aggregate("first_audio_s", median), _aggregate("first_audio_s", p90)
total_s_median, total_s_p90 = _aggregate("total_s", median), _aggregate("total_s", p90)
rtf_median, rtf_p90 = _aggregate("rtf", median), _aggregate("rtf", p90)
LATENCY_METRICS = tuple(f"{field}_{summary}" for field in FIELDS for summary in ("median", "p90"))


def task_items(record: dict | None, task: str) -> dict:
    """The per-answer values of :data:`LATENCY_METRICS`, for a task's ``process_results``."""
    item = dict(record["latency"], task=task) if record and record.get("latency") else None
    return dict.fromkeys(LATENCY_METRICS, item)


def summary(records: list) -> dict:
    """Median and p90 of each field over answers' latency records (None where no answer has the field),
    and where they were measured: what a leaderboard shows."""
    records = [r for r in records if isinstance(r, dict)]
    figures = {}
    for field in FIELDS:
        numbers = values(records, field)
        figures[field] = {"median": median(numbers) if numbers else None, "p90": p90(numbers) if numbers else None,
                          "answers": len(numbers)}
    return {**figures, "measured_at": measured_at(records)}


def measured_at(records: list) -> dict:
    """Where the figures come from: devices, batch sizes and whether they were streamed."""
    records = [r for r in records if isinstance(r, dict)]
    return {
        "devices": sorted({str(r.get("device")) for r in records}),
        "batch_sizes": sorted({int(r.get("batch_size", 1)) for r in records}),
        "streamed": sorted({bool(r.get("streamed")) for r in records}),
        "answers": len(records),
    }
