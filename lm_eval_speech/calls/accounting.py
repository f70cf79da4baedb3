"""What a caller's work cost: requests answered, every HTTP attempt, retries, cache hits, failures, tokens.

``http_requests`` counts every attempt sent (retries and failed ones included), so it is what
the server saw; ``calls`` counts the distinct requests that were answered. A request that ends
in failure is counted once under its last error's kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

FAILURE_KINDS = ("refused", "dns", "timeout", "connection", "4xx", "5xx", "unparsable", "other")


@dataclass
class CallStats:
    samples: int = 0  # outputs asked for (n per request)
    calls: int = 0  # distinct requests answered
    http_requests: int = 0  # every attempt sent
    retries: int = 0  # attempts after a request's first
    cache_hits: int = 0  # outputs served from the cache
    failures: Counter = field(default_factory=Counter)  # kind -> requests (or outputs, for "unparsable")
    n_honoured: bool | None = None  # whether the endpoint returned n choices when asked for more than one
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def fail(self, kind: str, count: int = 1) -> None:
        self.failures[kind if kind in FAILURE_KINDS else "other"] += count

    @property
    def failed(self) -> int:
        return sum(v for k, v in self.failures.items() if k != "unparsable")

    def add(self, other: CallStats) -> None:
        for name in ("samples", "calls", "http_requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)
        if other.n_honoured is not None:
            self.n_honoured = other.n_honoured if self.n_honoured is None else self.n_honoured and other.n_honoured

    def cost(self, prices: tuple[float, float] | None) -> float | None:
        if prices is None:
            return None
        return (self.prompt_tokens * prices[0] + self.completion_tokens * prices[1]) / 1e6

    def as_dict(self, prices: tuple[float, float] | None = None) -> dict:
        return {
            "samples": self.samples, "calls": self.calls, "http_requests": self.http_requests, "retries": self.retries,
            "cache_hits": self.cache_hits, "failures": {k: self.failures.get(k, 0) for k in FAILURE_KINDS},
            "n_honoured": self.n_honoured, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "estimated_cost_usd": self.cost(prices),
        }

    @classmethod
    def from_dict(cls, record: dict) -> CallStats:
        names = ("samples", "calls", "http_requests", "retries", "cache_hits", "prompt_tokens", "completion_tokens")
        stats = cls(**{k: record[k] for k in names if k in record})
        stats.failures = Counter({k: v for k, v in record.get("failures", {}).items() if v})
        stats.n_honoured = record.get("n_honoured")
        return stats
