import polars as pl
import pytest

from feature_store import splits
from feature_store.datasets import gtzan
from feature_store.errors import ParameterError
from feature_store.datasets.gtzan import GENRES


def fake_catalog(per_genre: int = 100, genres=GENRES, status=None) -> pl.DataFrame:
    rows = []
    for g in genres:
        for i in range(per_genre):
            sid = f"{g}.{i:05d}"
            rows.append({"song_id": sid, "genre": g, "number": i, "sha256": f"{hash(sid) & 0xFFFFFFFF:064x}",
                         "status": (status or {}).get(sid, "ok")})
    return pl.DataFrame(rows)


def test_seed_split_holds_out_the_last_ten_per_genre():
    cat = fake_catalog()
    s = gtzan.make_splits(cat)
    test = s.filter(pl.col("seed") == "test")
    assert test.height == 100
    assert test.group_by("genre").len()["len"].to_list() == [10] * 10
    assert sorted({int(x.split(".")[1]) for x in test["song_id"]}) == list(range(90, 100))


@pytest.mark.parametrize(("n", "held"), [(1, 1), (3, 1), (10, 1), (14, 1), (15, 2), (30, 3), (100, 10)])
def test_seed_split_is_proportional_with_at_least_one(n, held):
    s = splits.seed_split(fake_catalog(per_genre=n, genres=("blues",)))
    assert s.to_list().count("test") == held
    assert s.to_list()[-held:] == ["test"] * held


def test_quarantined_songs_are_excluded_everywhere():
    cat = fake_catalog(per_genre=10, status={"jazz.00009": "quarantined"})
    s = gtzan.make_splits(cat)
    row = s.filter(pl.col("song_id") == "jazz.00009").row(0, named=True)
    assert row["seed"] == row["stratified"] == row["fault_filtered"] == "excluded"
    # the jazz hold-out moves to the last usable song
    assert s.filter((pl.col("genre") == "jazz") & (pl.col("seed") == "test"))["song_id"].to_list() == ["jazz.00008"]


def test_stratified_folds_are_balanced_and_seeded():
    cat = fake_catalog(per_genre=20)
    a = splits.stratified_folds(cat, k=5, seed=1)
    counts = pl.DataFrame({"genre": cat["genre"], "fold": a}).group_by("genre", "fold").len()["len"]
    assert counts.to_list() == [4] * 50
    assert a.equals(splits.stratified_folds(cat, k=5, seed=1))
    assert not a.equals(splits.stratified_folds(cat, k=5, seed=2))
    with pytest.raises(ParameterError):
        splits.stratified_folds(cat, k=1)


def test_fault_filtered_counts_on_the_full_dataset():
    s = gtzan.make_splits(fake_catalog())
    counts = dict(s.group_by("fault_filtered").len().iter_rows())
    assert counts == {"train": 443, "valid": 197, "test": 290, "excluded": 70}


def test_no_leakage_in_any_scheme():
    assert splits.leakage(gtzan.make_splits(fake_catalog())).height == 0


def test_planted_leakage_is_found():
    s = gtzan.make_splits(fake_catalog(per_genre=10))
    # the same song listed twice, once in each part
    dup = s.filter(pl.col("song_id") == "rock.00000").with_columns(pl.lit("test").alias("seed"))
    leaks = splits.leakage(pl.concat([s, dup]))
    assert leaks.filter(pl.col("scheme") == "seed")["key"].to_list() == ["rock.00000", dup["sha256"][0]]
    # identical content under two names, in train and in test
    s2 = s.with_columns(
        pl.when(pl.col("song_id") == "pop.00009").then(pl.lit(s.filter(pl.col("song_id") == "pop.00000")["sha256"][0]))
        .otherwise(pl.col("sha256")).alias("sha256")
    )
    leaks2 = splits.leakage(s2).filter(pl.col("scheme") == "seed")
    assert leaks2["kind"].to_list() == ["sha256"] and leaks2["parts"].to_list() == ["test,train"]


def test_unknown_scheme_names_the_valid_ones():
    with pytest.raises(ParameterError, match="valid schemes are"):
        splits.validate_scheme("random")
