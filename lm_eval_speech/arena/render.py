"""The S2S-Arena leaderboard (a ``ratings.leaderboard`` bundle) as Markdown, JSON and two charts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MISSING = "–"
CAPTION = (
    "BT: Bradley–Terry maximum-likelihood rating on the Elo scale (mean = {initial:g}), order-independent, "
    "with a {percent:g}% bootstrap interval ({rounds} rounds). Online Elo: the paper's sequential Elo "
    "(start {initial:g}, K = {k:g}) in the recorded battle order, so it depends on that order. "
    "W-L-T: wins, losses, ties."
)
BREAKDOWN_CAPTION = (
    "The paper's online Elo run on each {attribute}'s battles alone (as the per-domain columns above); "
    "n: battles. Few battles make these noisy."
)
# Groups shown as their own tables, where the inputs carry them: (attribute, plural, row key, title).
BREAKDOWN_TABLES = (("level", "levels", "level_elo", "Online Elo by level"),
                    ("category", "categories", "category_elo", "Online Elo by category"))
WIN_RATE_CAPTION = "Share of battles the row model won against the column model (ties count half); (n): battles."


def _rating(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f}"


def _share(value: float | None, count: int) -> str:
    return MISSING if value is None else f"{value:.2f} ({count})"


def _table(headers: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    align = ["---" if column < right_from else "---:" for column in range(len(headers))]
    return ["| " + " | ".join(cells) + " |" for cells in (headers, align, *rows)]


def leaderboard_markdown(board: dict) -> str:
    settings = board["settings"]
    domains = board["domains"]
    headers = ["Rank", "Model", f"BT rating [{settings['confidence'] * 100:g}% CI]", "Online Elo (paper)",
               *[f"Elo: {domain}" for domain in domains], "Battles", "W-L-T"]
    rows = []
    for rank, row in enumerate(board["models"], start=1):
        interval = f"{row['bt_rating']:.0f} [{_rating(row['bt_lower'])}, {_rating(row['bt_upper'])}]"
        rows.append([
            str(rank), row["model"], interval, _rating(row["online_elo"]),
            *[_rating(row["domain_elo"].get(domain)) for domain in domains],
            str(row["battles"]), f"{row['wins']}-{row['losses']}-{row['ties']}",
        ])
    caption = CAPTION.format(initial=settings["elo_initial"], percent=settings["confidence"] * 100,
                             rounds=settings["bootstrap_rounds"], k=settings["elo_k"])
    win_rate = board["win_rate"]
    matrix_rows = [
        [model, *[MISSING if i == j else _share(value, win_rate["counts"][i][j]) for j, value in enumerate(shares)]]
        for i, (model, shares) in enumerate(zip(win_rate["models"], win_rate["matrix"]))
    ]
    lines = [
        "# S2S-Arena leaderboard", "",
        f"{settings['battles']} battles.", "",
        *_table(headers, rows, right_from=2), "", caption, "",
        *[line for table in BREAKDOWN_TABLES for line in _breakdown_section(board, *table)],
        "## Win rates", "",
        *_table(["Model", *win_rate["models"]], matrix_rows, right_from=1), "", WIN_RATE_CAPTION, "",
    ]
    return "\n".join(lines)


def _breakdown_section(board: dict, attribute: str, plural: str, row_key: str, title: str) -> list[str]:
    """One table of per-group online Elo (models in leaderboard order); nothing when no battle has the group."""
    groups = board.get(plural) or []
    if not groups:
        return []
    counts = board.get(f"battles_by_{attribute}", {})
    headers = ["Rank", "Model", *[f"{group} (n={counts.get(group, 0)})" for group in groups]]
    rows = [[str(rank), row["model"], *[_rating(row[row_key].get(group)) for group in groups]]
            for rank, row in enumerate(board["models"], start=1)]
    return [f"## {title}", "", *_table(headers, rows, right_from=2), "", BREAKDOWN_CAPTION.format(attribute=attribute), ""]


def write_leaderboard(board: dict, out_dir: str | Path, stem: str = "s2s_arena") -> list[Path]:
    """``<stem>_leaderboard.md``, ``<stem>_leaderboard.json``, ``<stem>_ratings.png``, ``<stem>_winrate.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / f"{stem}_leaderboard.md"
    markdown.write_text(leaderboard_markdown(board), encoding="utf-8")
    as_json = out_dir / f"{stem}_leaderboard.json"
    # allow_nan=False: the bundle promises None for missing numbers; a NaN here is a bug to surface
    as_json.write_text(json.dumps(board, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    ratings_chart = out_dir / f"{stem}_ratings.png"
    plot_ratings(board, ratings_chart)
    win_rate_chart = out_dir / f"{stem}_winrate.png"
    plot_win_rates(board, win_rate_chart)
    return [markdown, as_json, ratings_chart, win_rate_chart]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as pyplot

    return pyplot


def plot_ratings(board: dict, path: Path) -> None:
    """BT ratings with their interval as error bars, best at the top; the online Elo as a second marker."""
    pyplot = _pyplot()
    rows = board["models"]
    positions = list(range(len(rows)))[::-1]
    ratings = [row["bt_rating"] for row in rows]
    below = [row["bt_rating"] - row["bt_lower"] if row["bt_lower"] is not None else 0.0 for row in rows]
    above = [row["bt_upper"] - row["bt_rating"] if row["bt_upper"] is not None else 0.0 for row in rows]
    figure, axes = pyplot.subplots(figsize=(8, 1.2 + 0.5 * len(rows)), layout="constrained")
    try:
        confidence = board["settings"]["confidence"] * 100
        axes.errorbar(ratings, positions, xerr=[below, above], fmt="o", color="tab:blue", capsize=4,
                      label=f"Bradley–Terry ({confidence:g}% CI)")
        axes.scatter([row["online_elo"] for row in rows], positions, marker="x", color="tab:orange", zorder=3,
                     label="Online Elo (paper)")
        axes.axvline(board["settings"]["elo_initial"], color="grey", linewidth=0.8, linestyle=":")
        axes.set_yticks(positions, [row["model"] for row in rows])
        axes.set_xlabel("Rating")
        axes.set_title(f"S2S-Arena ratings ({board['settings']['battles']} battles)")
        axes.legend(loc="lower right", fontsize="small")
        axes.grid(axis="x", alpha=0.3)
        figure.savefig(path, dpi=120)
    finally:
        pyplot.close(figure)


def plot_win_rates(board: dict, path: Path) -> None:
    """Heatmap of the win-rate matrix with each share printed in its cell; grey where two models never met."""
    pyplot = _pyplot()
    win_rate = board["win_rate"]
    models = win_rate["models"]
    shares = np.array([[np.nan if value is None else value for value in row] for row in win_rate["matrix"]], dtype=float)
    size = 1.5 + 0.9 * len(models)
    figure, axes = pyplot.subplots(figsize=(size + 1.5, size), layout="constrained")
    try:
        colours = pyplot.get_cmap("RdYlGn").with_extremes(bad="lightgrey")
        image = axes.imshow(np.ma.masked_invalid(shares), cmap=colours, vmin=0.0, vmax=1.0)
        for i in range(len(models)):
            for j in range(len(models)):
                if not np.isnan(shares[i, j]):
                    dark_cell = not 0.2 <= shares[i, j] <= 0.85  # the colour map's deep ends
                    axes.text(j, i, f"{shares[i, j]:.2f}", ha="center", va="center", fontsize="small",
                              color="white" if dark_cell else "black")
        axes.set_xticks(range(len(models)), models, rotation=35, ha="right")
        axes.set_yticks(range(len(models)), models)
        axes.set_xlabel("against")
        axes.set_ylabel("model")
        axes.set_title("Win rate of row model vs column model")
        figure.colorbar(image, ax=axes, shrink=0.8)
        figure.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        pyplot.close(figure)
