"""The claims' intervals against values worked by hand from a printed t table
(t 0.975 quantiles: 4.302653 for 2 degrees of freedom, 3.182446 for 3, 2.776445 for 4)."""

import pytest

from orca_jax.pipelines.paired_statistics import paired_difference, verdict


@pytest.mark.parametrize("better, worse, mean, low, high, expected", [
    # differences 1..5: sd sqrt(2.5), se 0.707107, half-width 2.776445 * 0.707107 = 1.963243
    ([11, 12, 13, 14, 15], [10, 10, 10, 10, 10], 3.0, 1.036757, 4.963243, "appears"),
    # differences 10, -2, 4: sd 6, se 3.464102, half-width 4.302653 * 3.464102 = 14.904829
    ([50, 40, 44], [40, 42, 40], 4.0, -10.904829, 18.904829, "inconclusive"),
    # differences -3, -4, -5, -4: sd 0.816497, se 0.408248, half-width 3.182446 * 0.408248 = 1.299227
    ([1, 2, 3, 4], [4, 6, 8, 8], -4.0, -5.299227, -2.700773, "reversed"),
])
def test_interval_and_verdict(better, worse, mean, low, high, expected):
    paired = paired_difference(better, worse)
    assert paired["per_seed"] == [b - w for b, w in zip(better, worse)]
    assert paired["difference"] == pytest.approx(mean)
    assert paired["ci95"] == pytest.approx([low, high], abs=1e-5)
    assert verdict(paired["ci95"]) == expected


def test_one_seed_has_no_interval_and_mismatched_pairs_are_refused():
    assert paired_difference([3.0], [1.0]) == {"per_seed": [2.0], "difference": 2.0, "ci95": None}
    assert verdict(None) == "inconclusive"
    with pytest.raises(ValueError, match="paired"):
        paired_difference([1.0, 2.0], [1.0])
