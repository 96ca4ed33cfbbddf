import numpy as np
import pytest

from medmm.tasks.splits import assign_splits


def test_split_is_a_function_of_patient_and_seed_only():
    ids = np.arange(10_000, 20_000)
    full = dict(assign_splits(ids, seed=3).iter_rows())
    subset = dict(assign_splits(ids[::7][::-1], seed=3).iter_rows())
    assert all(full[k] == v for k, v in subset.items())
    other = dict(assign_splits(ids, seed=4).iter_rows())
    assert sum(full[k] != other[k] for k in full) > 1000


def test_split_ratios_are_close_to_8_1_1():
    df = assign_splits(np.arange(50_000), seed=0)
    frac = df["split"].value_counts(normalize=True)
    got = dict(zip(frac["split"], frac["proportion"]))
    assert got["train"] == pytest.approx(0.8, abs=0.01)
    assert got["val"] == pytest.approx(0.1, abs=0.01)
    assert got["test"] == pytest.approx(0.1, abs=0.01)


def test_bad_ratios():
    with pytest.raises(ValueError, match="ratios"):
        assign_splits([1, 2], ratios=(0.5, 0.5, 0.5))
