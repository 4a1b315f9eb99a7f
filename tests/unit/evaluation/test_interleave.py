"""Team-draft interleaving: each model's items in its own order, no duplicates, fair first pick."""

from __future__ import annotations

from collections import Counter

from recsys.evaluation.interleave import CONTROL, TREATMENT, credit, team_draft


def _subsequence(sub: list[str], full: list[str]) -> bool:
    it = iter(full)
    return all(x in it for x in sub)


def test_each_team_keeps_its_models_order_and_no_item_repeats():
    a = [f"i{n}" for n in range(20)]
    b = [f"i{n}" for n in (5, 3, 19, 0, 7, 11, 2, 13, 17, 1)]
    for seed in range(50):
        items, teams = team_draft(a, b, 10, seed=f"r{seed}")
        assert len(items) == 10 == len(set(items))
        for team, ranked in ((CONTROL, a), (TREATMENT, b)):
            picked = [i for i, t in zip(items, teams, strict=True) if t == team]
            assert _subsequence(picked, ranked)
        counts = Counter(teams)
        assert abs(counts[CONTROL] - counts[TREATMENT]) <= 1


def test_a_pick_is_the_teams_best_item_not_yet_shown():
    items, teams = team_draft(["x", "y", "z"], ["x", "w", "v"], 4, seed="s")
    for n, (item, team) in enumerate(zip(items, teams, strict=True)):
        ranked = ["x", "y", "z"] if team == CONTROL else ["x", "w", "v"]
        assert item == next(i for i in ranked if i not in items[:n])


def test_first_pick_is_fair_and_reproducible():
    firsts = Counter(team_draft(["a"], ["b"], 2, seed=f"req-{n}")[1][0] for n in range(2000))
    assert 900 < firsts[CONTROL] < 1100
    assert team_draft(["a", "b"], ["c", "d"], 4, "same") == team_draft(["a", "b"], ["c", "d"], 4,
                                                                        "same")


def test_identical_lists_and_short_lists():
    items, teams = team_draft(["a", "b", "c"], ["a", "b", "c"], 3, seed="q")
    assert items == ["a", "b", "c"] and len(teams) == 3
    items, teams = team_draft(["a"], ["b", "c", "d"], 4, seed="q")
    assert sorted(items) == ["a", "b", "c", "d"] and teams.count(CONTROL) == 1
    assert team_draft([], [], 5, seed="q") == ([], [])


def test_credit():
    teams = [CONTROL, TREATMENT, CONTROL, TREATMENT]
    assert credit(teams, [False, True, False, False]) == 1
    assert credit(teams, [True, True, True, False]) == -1
    assert credit(teams, [True, True, False, False]) == 0
    assert credit(teams, [False] * 4) == 0
