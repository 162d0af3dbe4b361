"""Properties of reciprocal rank fusion."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memlane.read.fusion import reciprocal_rank_fusion

ids = st.lists(st.sampled_from([f"m{i}" for i in range(12)]), unique=True, max_size=12)
rankings = st.dictionaries(st.sampled_from(["dense", "keyword", "graph"]), ids, min_size=1)
weights = st.dictionaries(st.sampled_from(["dense", "keyword", "graph"]),
                          st.floats(0.1, 3.0), max_size=3)


@given(rankings, weights, st.integers(0, 100))
def test_fusion_covers_the_union_with_scores_in_unit_interval(
        ranks: dict[str, list[str]], w: dict[str, float], k: int) -> None:
    fused = reciprocal_rank_fusion(ranks, k=k, weights=w)
    assert {f.id for f in fused} == {i for r in ranks.values() for i in r}
    assert len(fused) == len({f.id for f in fused})
    scores = [f.score for f in fused]
    assert all(0.0 <= s <= 1.0 + 1e-12 for s in scores)
    assert scores == sorted(scores, reverse=True)
    for f in fused:
        for name, (rank, _) in f.signals.items():
            assert ranks[name][rank - 1] == f.id


@given(rankings)
def test_fusion_is_pure_and_deterministic(ranks: dict[str, list[str]]) -> None:
    before = {k: list(v) for k, v in ranks.items()}
    assert reciprocal_rank_fusion(ranks) == reciprocal_rank_fusion(ranks)
    assert ranks == before


@given(ids.filter(bool), st.integers(1, 3))
def test_first_everywhere_scores_one(order: list[str], copies: int) -> None:
    names = ["dense", "keyword", "graph"][:copies]
    fused = reciprocal_rank_fusion({n: order for n in names})
    assert fused[0].id == order[0] and abs(fused[0].score - 1.0) < 1e-12
    assert [f.id for f in fused] == order


@given(rankings, st.sampled_from([f"m{i}" for i in range(12)]))
def test_moving_an_item_up_never_lowers_its_score(ranks: dict[str, list[str]],
                                                  item: str) -> None:
    name = next(iter(ranks))
    base = [i for i in ranks[name] if i != item]
    low = {**ranks, name: [*base, item]}
    high = {**ranks, name: [item, *base]}
    score = {f.id: f.score for f in reciprocal_rank_fusion(low)}[item]
    assert {f.id: f.score for f in reciprocal_rank_fusion(high)}[item] >= score
