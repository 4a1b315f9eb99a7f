"""Team-draft interleaving: each model's items in its own order, no duplicates, fair first pick."""

from __future__ import annotations

from collections import Counter

from recsys.evaluation.interleave import BOTH, CONTROL, TREATMENT, credit, team_draft


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
            picked = [i for i, t in zip(items, teams, strict=True) if t in (team, BOTH)]
            assert _subsequence(picked, ranked)
        counts = Counter(teams)
        assert abs(counts[CONTROL] - counts[TREATMENT]) <= 1


def test_a_pick_is_the_teams_best_item_not_yet_shown():
    ranked = {CONTROL: ["x", "y", "z"], TREATMENT: ["x", "w", "v"]}
    items, teams = team_draft(ranked[CONTROL], ranked[TREATMENT], 4, seed="s")
    for n, (item, team) in enumerate(zip(items, teams, strict=True)):
        for who in (CONTROL, TREATMENT) if team == BOTH else (team,):
            assert item == next(i for i in ranked[who] if i not in items[:n])


def test_an_item_both_models_propose_in_a_round_is_shown_once_and_credits_neither():
    # Round 1: both propose a (neutral). Round 2: b against c, a coin orders them. Round 3:
    # the control's c is shown, so both propose d (neutral).
    for seed in range(20):
        items, teams = team_draft(["a", "b", "c", "d"], ["a", "c", "b", "d"], 4, seed=f"s{seed}")
        assert items[0] == "a" and teams[0] == BOTH
        assert set(items[1:3]) == {"b", "c"}
        assert {teams[1], teams[2]} == {CONTROL, TREATMENT}
        assert teams[items.index("b")] == CONTROL and teams[items.index("c")] == TREATMENT
        assert items[3] == "d" and teams[3] == BOTH
    assert credit([BOTH, CONTROL, TREATMENT], [True, False, False]) == 0


def test_a_shared_item_at_different_depths_is_credited_to_the_team_that_ranks_it_higher():
    # b is the control's 2nd and the treatment's 1st: round 1 is a against b, not a tie.
    items, teams = team_draft(["a", "b"], ["b", "a"], 2, seed="x")
    assert sorted(zip(items, teams, strict=True)) == [("a", CONTROL), ("b", TREATMENT)]


def test_first_pick_is_fair_and_reproducible():
    firsts = Counter(team_draft(["a"], ["b"], 2, seed=f"req-{n}")[1][0] for n in range(2000))
    assert 900 < firsts[CONTROL] < 1100
    # After a shared first item, the next round's first pick is as fair.
    seconds = Counter(team_draft(["s", "a"], ["s", "b"], 3, seed=f"req-{n}")[1][1]
                      for n in range(2000))
    assert 900 < seconds[CONTROL] < 1100
    assert team_draft(["a", "b"], ["c", "d"], 4, "same") == team_draft(["a", "b"], ["c", "d"], 4,
                                                                        "same")


def test_identical_lists_and_short_lists():
    items, teams = team_draft(["a", "b", "c"], ["a", "b", "c"], 3, seed="q")
    assert items == ["a", "b", "c"] and teams == [BOTH] * 3  # identical models: no credit
    items, teams = team_draft(["a"], ["b", "c", "d"], 4, seed="q")
    assert sorted(items) == ["a", "b", "c", "d"] and teams.count(CONTROL) == 1
    assert team_draft([], [], 5, seed="q") == ([], [])


def test_credit():
    teams = [CONTROL, TREATMENT, CONTROL, TREATMENT]
    assert credit(teams, [False, True, False, False]) == 1
    assert credit(teams, [True, True, True, False]) == -1
    assert credit(teams, [True, True, False, False]) == 0
    assert credit(teams, [False] * 4) == 0
