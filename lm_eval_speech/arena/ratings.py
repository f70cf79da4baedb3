"""Ratings from battles: the paper's online Elo, a Bradley–Terry fit with bootstrap intervals, win rates.

The S2S-Arena paper ranks by online Elo (start 1000, K = 32, updates in the recorded order), which
depends on that order: its table puts SpeechGPT above Mini-Omni although Mini-Omni wins that pair
65 %. Bradley–Terry uses every battle at once, so the order does not matter; both are reported.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from lm_eval_speech.arena.battles import Battle

ELO_INITIAL = 1000.0
ELO_K = 32.0
ELO_SCALE = 400.0
ELO_BASE = 10.0
# L2 penalty on the natural-log strengths, on the summed log-likelihood: a N(0, 100²) prior, far wider
# than any real rating spread, that keeps all-wins / all-losses models and disconnected groups finite.
BT_L2 = 1e-4


def expected_score(rating_a: float, rating_b: float, scale: float = ELO_SCALE) -> float:
    """Elo's expected score of A against B."""
    return 1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / scale))


def online_elo(
    battles: Sequence[Battle], initial: float = ELO_INITIAL, k: float = ELO_K, scale: float = ELO_SCALE
) -> dict[str, float]:
    """The paper's sequential Elo: each battle updates both models, in the order given.

    Models enter at ``initial`` when first seen. A tie scores 0.5 for each side (the paper's
    human votes had none; judges may give them).
    """
    ratings: dict[str, float] = {}
    for battle in battles:
        rating_a = ratings.setdefault(battle.model_a, initial)
        rating_b = ratings.setdefault(battle.model_b, initial)
        change = k * (battle.score_a - expected_score(rating_a, rating_b, scale))
        ratings[battle.model_a] = rating_a + change
        ratings[battle.model_b] = rating_b - change  # B's score and expectation are 1 minus A's
    return ratings


def elo_by(
    battles: Sequence[Battle], attribute: str, initial: float = ELO_INITIAL, k: float = ELO_K, scale: float = ELO_SCALE
) -> dict[str, dict[str, float]]:
    """One online Elo per non-empty value of a battle attribute (domain, level, category), in value
    order, each over that value's battles in recorded order."""
    groups: dict[str, list[Battle]] = defaultdict(list)
    for battle in battles:
        value = getattr(battle, attribute)
        if value:
            groups[value].append(battle)
    return {value: online_elo(groups[value], initial, k, scale) for value in sorted(groups)}


def elo_by_domain(
    battles: Sequence[Battle], initial: float = ELO_INITIAL, k: float = ELO_K, scale: float = ELO_SCALE
) -> dict[str, dict[str, float]]:
    """One online Elo per non-empty domain, each over that domain's battles in recorded order."""
    return elo_by(battles, "domain", initial, k, scale)


# --- Bradley–Terry --------------------------------------------------------------------------------


def _models_and_indices(battles: Sequence[Battle]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Models sorted by name (so the fit never sees the battle order) and each battle as index arrays."""
    models = sorted({battle.model_a for battle in battles} | {battle.model_b for battle in battles})
    index = {model: position for position, model in enumerate(models)}
    first = np.array([index[battle.model_a] for battle in battles], dtype=np.intp)
    second = np.array([index[battle.model_b] for battle in battles], dtype=np.intp)
    score_a = np.array([battle.score_a for battle in battles], dtype=float)
    return models, first, second, score_a


def _wins_matrix(n_models: int, first, second, score_a, weights=None) -> np.ndarray:
    """wins[i, j]: (weighted) wins of i over j, a tie counting half for each side."""
    weights = np.ones(len(first)) if weights is None else weights
    wins = np.zeros((n_models, n_models))
    np.add.at(wins, (first, second), weights * score_a)
    np.add.at(wins, (second, first), weights * (1.0 - score_a))
    return wins


def _fit_log_strengths(wins: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Natural-log BT strengths maximising the likelihood of ``wins`` plus the BT_L2 penalty.

    P(i beats j) = sigmoid(theta_i - theta_j). The objective is divided by the battle count so
    the optimiser's tolerances mean the same for 40 or 40,000 battles.
    """
    n_models = wins.shape[0]
    total = max(wins.sum(), 1.0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = theta[:, None] - theta[None, :]
        loss = np.sum(wins * np.logaddexp(0.0, -margin))  # -log sigmoid(margin), overflow-free
        surprise = wins * (0.5 - 0.5 * np.tanh(margin / 2.0))  # wins * (1 - sigmoid(margin))
        gradient = surprise.sum(axis=0) - surprise.sum(axis=1) + BT_L2 * theta
        return (loss + 0.5 * BT_L2 * theta @ theta) / total, gradient / total

    start = np.zeros(n_models) if start is None else start
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 10_000, "gtol": 1e-12, "ftol": 1e-15})
    # the line search may stop at machine precision without "success"; only a real miss is an error
    if np.max(np.abs(result.jac)) > 1e-6:
        raise RuntimeError(f"Bradley–Terry fit did not converge: {result.message}")
    return result.x


def _to_ratings(theta: np.ndarray, present: np.ndarray, scale: float, base: float, initial: float) -> np.ndarray:
    """Elo-scale ratings, the mean over present models anchored at ``initial``; absent models NaN."""
    ratings = np.full(theta.shape, np.nan)
    centred = theta[present] - theta[present].mean()
    ratings[present] = initial + scale * centred / math.log(base)
    return ratings


def bradley_terry(
    battles: Sequence[Battle], scale: float = ELO_SCALE, base: float = ELO_BASE, initial: float = ELO_INITIAL
) -> dict[str, float]:
    """Maximum-likelihood Bradley–Terry ratings on the Elo scale, independent of battle order.

    rating = initial + scale · log_base(strength), so with the defaults a 400-point gap means
    10:1 odds, as in Elo. Anchoring: the mean rating over all models is ``initial`` (strengths
    are only defined up to a common factor). A tie counts as half a win for each side, as in
    Chatbot Arena. A tiny L2 penalty (``BT_L2`` on the log-strengths) keeps a model with only wins
    or only losses finite and puts each group of models that never met another group on the same
    mean; it moves ratings of models with mixed results by far less than a point.
    """
    if not battles:
        return {}
    models, first, second, score_a = _models_and_indices(battles)
    theta = _fit_log_strengths(_wins_matrix(len(models), first, second, score_a))
    ratings = _to_ratings(theta, np.ones(len(models), dtype=bool), scale, base, initial)
    return {model: float(rating) for model, rating in zip(models, ratings)}


def bootstrap_bradley_terry(
    battles: Sequence[Battle],
    rounds: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    initial: float = ELO_INITIAL,
) -> dict[str, tuple[float, float, float]]:
    """Per model ``(rating, lower, upper)``: the full-data fit and a percentile bootstrap interval.

    Each round refits on the battles resampled with replacement (``numpy.random.default_rng(seed)``,
    so the same seed gives the same intervals). A model missing from a round's sample is left out
    of that round rather than given a made-up rating.
    """
    if not battles:
        return {}
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie between 0 and 1, got {confidence}")
    models, first, second, score_a = _models_and_indices(battles)
    n_models = len(models)
    everyone = np.ones(n_models, dtype=bool)
    full_theta = _fit_log_strengths(_wins_matrix(n_models, first, second, score_a))
    point = _to_ratings(full_theta, everyone, scale, base, initial)

    generator = np.random.default_rng(seed)
    samples = np.full((rounds, n_models), np.nan)
    uniform = np.full(len(battles), 1.0 / len(battles))
    for round_index in range(rounds):
        # how often each battle is drawn: resampling with replacement, without building the sample
        weights = generator.multinomial(len(battles), uniform).astype(float)
        wins = _wins_matrix(n_models, first, second, score_a, weights)
        present = (wins.sum(axis=0) + wins.sum(axis=1)) > 0
        theta = _fit_log_strengths(wins, start=full_theta)
        samples[round_index] = _to_ratings(theta, present, scale, base, initial)

    tail = 100.0 * (1.0 - confidence) / 2.0
    intervals = {}
    for position, model in enumerate(models):
        drawn = samples[:, position][~np.isnan(samples[:, position])]
        lower, upper = np.percentile(drawn, [tail, 100.0 - tail]) if drawn.size else (math.nan, math.nan)
        intervals[model] = (float(point[position]), float(lower), float(upper))
    return intervals


# --- win rates and the bundle ---------------------------------------------------------------------


def win_rate_matrix(
    battles: Sequence[Battle], models: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(models, matrix, counts)``: matrix[i][j] is the share of i-vs-j battles that i won.

    Ties count half. NaN where i and j never met (and on the diagonal); counts[i][j] is the number
    of battles between them. Models in the given order, else sorted by name.
    """
    if models is None:
        models = sorted({battle.model_a for battle in battles} | {battle.model_b for battle in battles})
    models = list(models)
    index = {model: position for position, model in enumerate(models)}
    wins = np.zeros((len(models), len(models)))
    counts = np.zeros((len(models), len(models)), dtype=int)
    for battle in battles:
        a, b = index[battle.model_a], index[battle.model_b]
        wins[a, b] += battle.score_a
        wins[b, a] += 1.0 - battle.score_a
        counts[a, b] += 1
        counts[b, a] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(counts > 0, wins / counts, np.nan)
    return models, matrix, counts


def record(battles: Sequence[Battle]) -> dict[str, dict[str, int]]:
    """Per model: battles played, wins, losses, ties."""
    tally: dict[str, dict[str, int]] = defaultdict(lambda: {"battles": 0, "wins": 0, "losses": 0, "ties": 0})
    for battle in battles:
        outcomes = {"model_a": ("wins", "losses"), "model_b": ("losses", "wins"), "tie": ("ties", "ties")}
        for model, outcome in zip((battle.model_a, battle.model_b), outcomes[battle.winner]):
            tally[model]["battles"] += 1
            tally[model][outcome] += 1
    return dict(tally)


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# Battle attributes the leaderboard breaks the online Elo down by: (attribute, plural, row key).
BREAKDOWNS = (("domain", "domains", "domain_elo"), ("level", "levels", "level_elo"), ("category", "categories", "category_elo"))


def leaderboard(battles: Sequence[Battle], rounds: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Everything the leaderboard shows, JSON-serialisable (no NaN: missing numbers are None).

    ``models``: one row per model, best Bradley–Terry rating first, with the online Elo per domain,
    level and category (``domain_elo``, ``level_elo``, ``category_elo``; None where a model played
    none of that group's battles); ``domains``, ``levels``, ``categories``: the groups present, and
    ``battles_by_domain`` etc. their battle counts; ``win_rate``: the matrix in row order;
    ``settings``: the constants behind the numbers.
    """
    if not battles:
        raise ValueError("a leaderboard needs at least one battle")
    elo = online_elo(battles)
    groups = {attribute: elo_by(battles, attribute) for attribute, _, _ in BREAKDOWNS}
    bt = bootstrap_bradley_terry(battles, rounds=rounds, seed=seed, confidence=confidence)
    tally = record(battles)
    order = sorted(bt, key=lambda model: (-bt[model][0], model))
    rows = []
    for model in order:
        rating, lower, upper = bt[model]
        rows.append({
            "model": model,
            "bt_rating": rating,
            "bt_lower": _finite_or_none(lower),
            "bt_upper": _finite_or_none(upper),
            "online_elo": elo[model],
            **{row_key: {value: ratings.get(model) for value, ratings in groups[attribute].items()}
               for attribute, _, row_key in BREAKDOWNS},
            **tally[model],
        })
    models, matrix, counts = win_rate_matrix(battles, order)
    return {
        "models": rows,
        **{plural: list(groups[attribute]) for attribute, plural, _ in BREAKDOWNS},
        **{f"battles_by_{attribute}": _battle_counts(battles, attribute) for attribute, _, _ in BREAKDOWNS},
        "win_rate": {
            "models": models,
            "matrix": [[_finite_or_none(value) for value in row] for row in matrix.tolist()],
            "counts": counts.tolist(),
        },
        "settings": {
            "battles": len(battles),
            "elo_initial": ELO_INITIAL,
            "elo_k": ELO_K,
            "elo_scale": ELO_SCALE,
            "bt_anchor": "mean rating = elo_initial",
            "bt_l2": BT_L2,
            "bootstrap_rounds": rounds,
            "bootstrap_seed": seed,
            "confidence": confidence,
        },
    }


def _battle_counts(battles: Sequence[Battle], attribute: str) -> dict[str, int]:
    counts = Counter(getattr(battle, attribute) for battle in battles if getattr(battle, attribute))
    return {value: counts[value] for value in sorted(counts)}
