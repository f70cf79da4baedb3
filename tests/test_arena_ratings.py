"""S2S-Arena rating engine: online Elo, Bradley–Terry with bootstrap, win rates, battle files, rendering."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from lm_eval_speech.arena.battles import (
    FIELD_NAMES,
    Battle,
    BattleError,
    read_battles_csv,
    read_human_battles,
    write_battles_jsonl,
)
from lm_eval_speech.arena.ratings import (
    bootstrap_bradley_terry,
    bradley_terry,
    elo_by,
    elo_by_domain,
    leaderboard,
    online_elo,
    win_rate_matrix,
)
from lm_eval_speech.arena.render import leaderboard_markdown, write_leaderboard

# The paper's Figure 4: share of wins of the row model against the column model.
PAPER_MODELS = ["GPT-4o", "Cascade", "FunAudioLLM(4o)", "SpeechGPT", "Mini-Omni", "LLaMA-Omni"]
PAPER_WIN_RATES = [
    [None, 0.81, 0.75, 0.91, 0.87, 0.85],
    [0.19, None, 0.67, 0.88, 0.83, 0.96],
    [0.25, 0.33, None, 0.72, 0.74, 0.85],
    [0.088, 0.12, 0.28, None, 0.35, 0.58],
    [0.13, 0.17, 0.26, 0.65, None, 0.37],
    [0.15, 0.042, 0.15, 0.42, 0.63, None],
]
DOMAINS = ["education", "companionship", "entertainment", "medical"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


LEVELS = ["L0", "L1", "L2", "L3"]
CATEGORIES = ["age", "emotion", "speed"]


def paper_battles(per_pair: int, seed: int = 0) -> list[Battle]:
    """``per_pair`` battles for each pair, split by the upper triangle's share; sides, domains, levels,
    categories and order shuffled."""
    shuffler = random.Random(seed)
    battles = []
    for i, j in ((i, j) for i in range(6) for j in range(i + 1, 6)):
        row_wins = round(per_pair * PAPER_WIN_RATES[i][j])
        for number in range(per_pair):
            row_won = number < row_wins
            first, second = PAPER_MODELS[i], PAPER_MODELS[j]
            if shuffler.random() < 0.5:  # the row model is not always on side A
                first, second = second, first
            winner = "model_a" if row_won == (first == PAPER_MODELS[i]) else "model_b"
            battles.append(Battle(first, second, winner, input_id=f"{i}-{j}-{number}", domain=shuffler.choice(DOMAINS),
                                  level=shuffler.choice(LEVELS), category=shuffler.choice(CATEGORIES)))
    shuffler.shuffle(battles)
    return battles


def elo_expected(rating: float, opponent: float) -> float:
    return 1 / (1 + 10 ** ((opponent - rating) / 400))


# --- online Elo -----------------------------------------------------------------------------------


def test_online_elo_follows_hand_computed_updates():
    battles = [
        Battle("A", "B", "model_a"),
        Battle("A", "C", "model_a"),
        Battle("C", "B", "model_a"),
        Battle("B", "A", "tie"),
    ]
    # 1. A beats B, both at 1000: expected 0.5, so A = 1000 + 32 * 0.5 = 1016, B = 984.
    a, b, c = 1016.0, 984.0, 1000.0
    # 2. A (1016) beats C (1000): expected for A = 1 / (1 + 10^(-16/400)) = 1 / 1.912011 = 0.523010.
    expected_a = 1 / (1 + 10 ** (-16 / 400))
    assert expected_a == pytest.approx(0.523010, abs=1e-6)
    a, c = a + 32 * (1 - expected_a), c - 32 * (1 - expected_a)
    assert (a, c) == pytest.approx((1031.2637, 984.7363), abs=1e-4)
    # 3. C beats B.
    expected_c = elo_expected(c, b)
    c, b = c + 32 * (1 - expected_c), b - 32 * (1 - expected_c)
    # 4. B ties A: each scores 0.5.
    expected_b = elo_expected(b, a)
    b, a = b + 32 * (0.5 - expected_b), a - 32 * (0.5 - expected_b)

    ratings = online_elo(battles)
    assert ratings == pytest.approx({"A": a, "B": b, "C": c}, abs=1e-9)
    assert sum(ratings.values()) == pytest.approx(3000)  # zero-sum updates


def test_online_elo_parameters_and_first_appearance():
    ratings = online_elo([Battle("A", "B", "model_b")], initial=1500, k=10)
    assert ratings == pytest.approx({"A": 1495.0, "B": 1505.0})
    assert online_elo([]) == {}


def test_online_elo_depends_on_battle_order():
    battles = [Battle("A", "B", "model_a"), Battle("A", "B", "model_a"), Battle("B", "C", "model_a"),
               Battle("C", "A", "model_a")]
    forward, backward = online_elo(battles), online_elo(battles[::-1])
    assert max(abs(forward[model] - backward[model]) for model in forward) > 1.0


def test_elo_by_domain_runs_each_domain_on_its_own_battles():
    battles = paper_battles(per_pair=10)
    battles.append(Battle("GPT-4o", "Cascade", "model_b"))  # no domain: overall only
    per_domain = elo_by_domain(battles)
    assert list(per_domain) == sorted(DOMAINS)
    for domain in DOMAINS:
        assert per_domain[domain] == online_elo([battle for battle in battles if battle.domain == domain])


def test_elo_by_level_and_category_is_the_per_domain_procedure_on_their_battles():
    battles = paper_battles(per_pair=10)
    battles.append(Battle("GPT-4o", "Cascade", "model_b", domain="medical"))  # no level nor category
    for attribute, groups in (("level", LEVELS), ("category", CATEGORIES)):
        per_group = elo_by(battles, attribute)
        assert list(per_group) == sorted(groups)
        for group in groups:
            assert per_group[group] == online_elo([battle for battle in battles if getattr(battle, attribute) == group])
    assert elo_by(battles, "domain") == elo_by_domain(battles)
    assert elo_by(battles, "level")["L0"] != elo_by(battles, "level")["L1"]


# --- the paper's win-rate matrix ------------------------------------------------------------------


def test_win_rate_matrix_reproduces_paper_shares():
    models, matrix, counts = win_rate_matrix(paper_battles(per_pair=100), PAPER_MODELS)
    assert models == PAPER_MODELS
    for i in range(6):
        assert math.isnan(matrix[i][i]) and counts[i][i] == 0
        for j in range(6):
            if i != j:
                assert counts[i][j] == 100
                # 1/200 from rounding to whole battles, plus the paper's own rounding (.088 + .91 != 1)
                assert matrix[i][j] == pytest.approx(PAPER_WIN_RATES[i][j], abs=0.011)
                assert matrix[i][j] + matrix[j][i] == pytest.approx(1.0)


def test_win_rate_matrix_ties_count_half_and_unmet_pairs_are_nan():
    battles = [Battle("A", "B", "tie"), Battle("B", "A", "model_a"), Battle("C", "D", "model_a")]
    models, matrix, counts = win_rate_matrix(battles)
    assert models == ["A", "B", "C", "D"]
    assert matrix[0][1] == pytest.approx(0.25) and matrix[1][0] == pytest.approx(0.75)
    assert counts[0][1] == 2 and counts[0][2] == 0
    assert math.isnan(matrix[0][2])


def implied_orders() -> set[tuple[str, str]]:
    """Pairs (better, worse) on which the paper's matrix is unambiguous.

    Both must agree, with a clear margin: the head-to-head share and the mean share against all
    others. Among SpeechGPT, Mini-Omni and LLaMA-Omni the head-to-head results form a cycle
    (.65, .58, .63), so only Mini-Omni > SpeechGPT (h2h .65, mean .316 vs .284) survives.
    """
    mean_share = [np.mean([value for value in row if value is not None]) for row in PAPER_WIN_RATES]
    pairs = set()
    for i in range(6):
        for j in range(6):
            if i != j and PAPER_WIN_RATES[i][j] > 0.55 and mean_share[i] - mean_share[j] > 0.02:
                pairs.add((PAPER_MODELS[i], PAPER_MODELS[j]))
    return pairs


def test_bradley_terry_order_matches_paper_matrix():
    pairs = implied_orders()
    top, bottom = PAPER_MODELS[:3], PAPER_MODELS[3:]
    # what the matrix implies, worked out by hand, before trusting the helper
    assert {("GPT-4o", "Cascade"), ("Cascade", "FunAudioLLM(4o)"), ("Mini-Omni", "SpeechGPT")} <= pairs
    assert {(better, worse) for better in top for worse in bottom} <= pairs
    assert ("SpeechGPT", "Mini-Omni") not in pairs and ("LLaMA-Omni", "Mini-Omni") not in pairs

    ratings = bradley_terry(paper_battles(per_pair=100))
    for better, worse in pairs:
        assert ratings[better] > ratings[worse], (better, worse)
    assert np.mean(list(ratings.values())) == pytest.approx(1000.0)


def test_bradley_terry_ignores_battle_order():
    battles = paper_battles(per_pair=30)
    reordered = list(battles)
    random.Random(7).shuffle(reordered)
    assert online_elo(reordered) != pytest.approx(online_elo(battles))  # the shuffle did change the order
    first, second = bradley_terry(battles), bradley_terry(reordered)
    assert second == pytest.approx(first, abs=1e-6)


def test_bradley_terry_matches_closed_form_for_two_models():
    # A wins 3 of 4: the MLE odds are 3:1, so A - B = 400 * log10(3) = 190.85; the mean is 1000
    battles = [Battle("A", "B", "model_a")] * 2 + [Battle("B", "A", "model_b"), Battle("B", "A", "model_a")]
    ratings = bradley_terry(battles)
    assert ratings["A"] - ratings["B"] == pytest.approx(400 * math.log10(3), abs=0.1)
    assert ratings["A"] + ratings["B"] == pytest.approx(2000.0)
    # another scale and base: 3:1 odds in natural-log units of 100
    other = bradley_terry(battles, scale=100, base=math.e, initial=0)
    assert other["A"] - other["B"] == pytest.approx(100 * math.log(3), abs=0.01)


def test_ties_and_undefeated_models_stay_finite():
    battles = (
        [Battle("champion", "middle", "model_a")] * 5
        + [Battle("middle", "other", "tie")] * 2
        + [Battle("other", "loser", "model_a")] * 3
        + [Battle("tied_a", "tied_b", "tie")] * 2
    )
    ratings = bradley_terry(battles)
    assert all(math.isfinite(value) for value in ratings.values())
    assert max(ratings, key=ratings.get) == "champion" and min(ratings, key=ratings.get) == "loser"
    assert ratings["tied_a"] == pytest.approx(ratings["tied_b"], abs=1e-6)


def test_disconnected_components_are_finite_and_keep_their_gaps():
    battles = [Battle("A", "B", "model_a")] * 3 + [Battle("A", "B", "model_b")]
    battles += [Battle("C", "D", "model_b")] * 3 + [Battle("C", "D", "model_a")]
    ratings = bradley_terry(battles)
    assert all(math.isfinite(value) for value in ratings.values())
    gap = 400 * math.log10(3)
    assert ratings["A"] - ratings["B"] == pytest.approx(gap, abs=0.1)
    assert ratings["D"] - ratings["C"] == pytest.approx(gap, abs=0.1)
    assert np.mean(list(ratings.values())) == pytest.approx(1000.0)


# --- bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_intervals_contain_point_and_are_reproducible():
    battles = paper_battles(per_pair=20)
    intervals = bootstrap_bradley_terry(battles, rounds=200, seed=3)
    point = bradley_terry(battles)
    assert set(intervals) == set(PAPER_MODELS)
    for model, (rating, lower, upper) in intervals.items():
        assert rating == pytest.approx(point[model])
        assert lower < rating < upper
    assert bootstrap_bradley_terry(battles, rounds=200, seed=3) == intervals
    assert bootstrap_bradley_terry(battles, rounds=200, seed=4) != intervals


def test_bootstrap_narrows_with_ten_times_the_battles():
    few = bootstrap_bradley_terry(paper_battles(per_pair=20), rounds=200)
    many = bootstrap_bradley_terry(paper_battles(per_pair=200), rounds=200)
    for model in PAPER_MODELS:
        assert many[model][2] - many[model][1] < 0.6 * (few[model][2] - few[model][1]), model


# --- battles and their files ----------------------------------------------------------------------


def test_battle_validation_names_the_battle():
    with pytest.raises(BattleError, match="'x' vs 'x'"):
        Battle("x", "x", "model_a")
    with pytest.raises(BattleError, match="'x' vs 'y' on 'q7'.*'A'"):
        Battle("x", "y", "A", input_id="q7")
    assert [Battle("x", "y", winner).score_a for winner in ("model_a", "model_b", "tie")] == [1.0, 0.0, 0.5]


def test_jsonl_round_trip(tmp_path):
    battles = [
        Battle("gpt-4o", "mini-omni", "model_a", input_id="q1", domain="médical", task="s2s_arena", level="L3",
               category="emotion", judge="gpt-4o-mini", detail="clearer tone"),
        Battle("mini-omni", "cascade", "tie", source="human"),
    ]
    path = write_battles_jsonl(tmp_path / "battles.jsonl", battles)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(list(record) == list(FIELD_NAMES) for record in records)  # every field, in Battle's order
    assert [Battle(**record) for record in records] == battles
    assert "médical" in path.read_text(encoding="utf-8")  # written as UTF-8, not escaped


def test_csv_accepts_side_letters_model_names_and_ties(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text(
        "model_a,model_b,winner,domain,annotator_note\n"
        "x,y,A,education,ignored\n"
        "x,y,b,,\n"
        "x,y,y,medical,\n"
        "x,y,tie (bothbad),,\n"
        "x,y,model_a,,\n"
    )
    battles = read_battles_csv(path)
    assert [battle.winner for battle in battles] == ["model_a", "model_b", "model_b", "tie", "model_a"]
    assert [battle.domain for battle in battles][:3] == ["education", "", "medical"]
    assert all(battle.source == "judge" for battle in battles)


def test_csv_bad_winner_names_file_and_line(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text("model_a,model_b,winner\nx,y,A\nx,y,maybe\n")
    with pytest.raises(BattleError, match=r"votes\.csv:3: .*'maybe'"):
        read_battles_csv(path)
    path.write_text("model_a,model_b,result\nx,y,A\n")
    with pytest.raises(BattleError, match=r"votes\.csv:1: .*winner"):
        read_battles_csv(path)


def test_human_json_import_is_tolerant_and_reports_every_unreadable_record(tmp_path):
    path = tmp_path / "human_evaluate_result.json"
    records = [
        {"modelA": "gpt-4o", "modelB": "mini-omni", "winner": "modelA", "category": "medical", "id": 12, "level": 2},
        {"model1": "cascade", "model2": "gpt-4o", "choice": 2, "annotator": "u3"},
        {"left": "speechgpt", "right": "llama-omni", "result": "tie"},
        {"model_a": "gpt-4o"},
        {"model_a": "gpt-4o", "model_b": "cascade", "winner": "maybe"},
        "not a record",
        {"Model A": {"name": "cascade"}, "Model B": "speechgpt", "Preference": "cascade"},
    ]
    path.write_text(json.dumps({"meta": "v1", "battles": records}))
    battles, problems = read_human_battles(path)
    assert [(b.model_a, b.model_b, b.winner) for b in battles] == [
        ("gpt-4o", "mini-omni", "model_a"),
        ("cascade", "gpt-4o", "model_b"),
        ("speechgpt", "llama-omni", "tie"),
        ("cascade", "speechgpt", "model_a"),
    ]
    assert battles[0].domain == "medical" and battles[0].input_id == "12" and battles[1].judge == "u3"
    assert (battles[0].level, battles[1].level) == ("2", "")
    assert all(battle.source == "human" for battle in battles)
    assert len(problems) == 3
    assert problems[0].startswith("record 3:") and "model" in problems[0]
    assert problems[1].startswith("record 4:") and "'maybe'" in problems[1]
    assert problems[2].startswith("record 5:")


def test_human_import_of_a_plain_list_jsonl_and_keyed_objects(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"model_a": "x", "model_b": "y", "winner": "B"}]))
    assert read_human_battles(listed) == ([Battle("x", "y", "model_b", source="human")], [])

    lines = tmp_path / "votes.jsonl"
    lines.write_text(json.dumps({"model_a": "x", "model_b": "y", "winner": "x"}) + "\n{oops\n")
    battles, problems = read_human_battles(lines)
    assert len(battles) == 1 and len(problems) == 1 and problems[0].startswith("record 1 (line 2): not JSON")

    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"q1": {"model_a": "x", "model_b": "y", "winner": "tie"}}))
    battles, problems = read_human_battles(keyed)
    assert battles == [Battle("x", "y", "tie", input_id="q1", source="human")] and problems == []

    with pytest.raises(BattleError, match="keyed.txt"):
        read_human_battles(tmp_path / "keyed.txt")


# --- leaderboard and rendering --------------------------------------------------------------------


def test_leaderboard_bundle_is_complete_and_json_clean():
    battles = paper_battles(per_pair=20) + [Battle("GPT-4o", "Newcomer", "tie")]
    board = leaderboard(battles, rounds=50, seed=1)
    rows = {row["model"]: row for row in board["models"]}
    assert set(rows) == set(PAPER_MODELS) | {"Newcomer"}
    ratings = [row["bt_rating"] for row in board["models"]]
    assert ratings == sorted(ratings, reverse=True)
    assert rows["GPT-4o"]["online_elo"] == pytest.approx(online_elo(battles)["GPT-4o"])
    assert rows["Newcomer"]["domain_elo"] == {domain: None for domain in sorted(DOMAINS)}
    assert rows["Newcomer"]["level_elo"] == {level: None for level in LEVELS}
    assert (board["levels"], board["categories"]) == (LEVELS, sorted(CATEGORIES))
    assert rows["GPT-4o"]["level_elo"]["L2"] == pytest.approx(elo_by(battles, "level")["L2"]["GPT-4o"])
    assert sum(board["battles_by_level"].values()) == len(battles) - 1 == sum(board["battles_by_category"].values())
    assert (rows["Newcomer"]["battles"], rows["Newcomer"]["ties"]) == (1, 1)
    gpt = [battle for battle in battles if "GPT-4o" in (battle.model_a, battle.model_b)]
    winners = [battle.model_a if battle.winner == "model_a" else battle.model_b for battle in gpt if battle.winner != "tie"]
    gpt_wins = winners.count("GPT-4o")
    assert (rows["GPT-4o"]["battles"], rows["GPT-4o"]["wins"]) == (len(gpt), gpt_wins)
    assert rows["GPT-4o"]["wins"] + rows["GPT-4o"]["losses"] + rows["GPT-4o"]["ties"] == len(gpt)
    assert board["win_rate"]["models"] == [row["model"] for row in board["models"]]
    text = json.dumps(board, allow_nan=False)  # raises on NaN
    assert json.loads(text) == board


def test_render_writes_markdown_json_and_pngs(tmp_path):
    board = leaderboard(paper_battles(per_pair=10), rounds=30)
    markdown = leaderboard_markdown(board)
    for model in PAPER_MODELS:
        assert f"| {model} |" in markdown
    for domain in DOMAINS:
        assert f"Elo: {domain}" in markdown
    assert "Online Elo (paper)" in markdown and "## Win rates" in markdown
    by_level = markdown.split("## Online Elo by level")[1].split("## Online Elo by category")[0]
    assert "| Rank | Model | " + " | ".join(f"{level} (n={board['battles_by_level'][level]})" for level in LEVELS) + " |" in by_level
    top = board["models"][0]
    assert f"| 1 | {top['model']} | " + " | ".join(f"{top['level_elo'][level]:.0f}" for level in LEVELS) + " |" in by_level
    assert "## Online Elo by category" in markdown.split("## Win rates")[0]
    unlabelled = leaderboard([Battle("x", "y", "model_a", domain="medical")], rounds=5)
    assert unlabelled["levels"] == [] and "Online Elo by" not in leaderboard_markdown(unlabelled)
    paths = write_leaderboard(board, tmp_path / "out", stem="demo")
    assert [path.name for path in paths] == [
        "demo_leaderboard.md", "demo_leaderboard.json", "demo_ratings.png", "demo_winrate.png"]
    assert paths[0].read_text(encoding="utf-8") == markdown
    assert json.loads(paths[1].read_text(encoding="utf-8")) == board
    for png in paths[2:]:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
