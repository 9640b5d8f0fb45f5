"""Seed checks, per-method summaries and the verdicts (unpaired: the seed ranges must not
overlap; paired: every per-seed difference must have one sign)."""

import dataclasses
import re

import pytest

from common.seeds import SeedError, Summary, Verdict, check_seeds, paired_verdict, summarize, verdict


# check_seeds


def test_check_seeds_returns_a_list_of_the_seeds():
    assert check_seeds((3, 1, 2)) == [3, 1, 2]
    assert check_seeds([0, 1], minimum=2) == [0, 1]


def test_check_seeds_refuses_non_integers():
    with pytest.raises(SeedError, match=re.escape("seeds must be integers, got [0, 1.5, 2]")):
        check_seeds([0, 1.5, 2])
    with pytest.raises(SeedError, match=re.escape("seeds must be integers, got ['0', 1, 2]")):
        check_seeds(["0", 1, 2])


def test_check_seeds_refuses_bools():
    with pytest.raises(SeedError, match=re.escape("seeds must be integers, got [True, 2, 3]")):
        check_seeds([True, 2, 3])


def test_check_seeds_refuses_duplicates():
    with pytest.raises(SeedError, match=re.escape("seeds must be distinct, got [0, 1, 1]")):
        check_seeds([0, 1, 1])


def test_check_seeds_refuses_too_few():
    with pytest.raises(SeedError, match=re.escape(
            "a comparison needs at least 3 seeds to show a spread, got 2: [0, 1]")):
        check_seeds([0, 1])
    with pytest.raises(SeedError, match=re.escape(
            "a comparison needs at least 5 seeds to show a spread, got 4: [0, 1, 2, 3]")):
        check_seeds([0, 1, 2, 3], minimum=5)


def test_seed_error_is_a_value_error():
    assert issubclass(SeedError, ValueError)


# summarize


def test_summarize_mean_std_range():
    s = summarize([1, 2, 3, 4])
    assert isinstance(s, Summary) and s.values == (1.0, 2.0, 3.0, 4.0)
    assert s.mean == pytest.approx(2.5)
    assert s.std == pytest.approx((5 / 3) ** 0.5)     # sample std (n - 1)
    assert (s.lo, s.hi) == (1.0, 4.0)
    assert str(s) == "2.5000 ± 1.2910 (range 1.0000–4.0000, n=4)"


def test_summarize_one_value_has_no_spread():
    s = summarize(iter([0.7]))
    assert (s.mean, s.std, s.lo, s.hi) == (pytest.approx(0.7), 0.0, 0.7, 0.7)


def test_summarize_refuses_nothing():
    with pytest.raises(SeedError, match="no values to summarize"):
        summarize([])


# verdict (unpaired)


def test_verdict_outside_the_spread_names_a():
    v = verdict("a", [0.90, 0.91, 0.92], "b", [0.80, 0.82, 0.81])
    assert isinstance(v, Verdict) and v.paired is False
    assert v.winner == "a"
    assert v.diff == pytest.approx(0.10)
    assert v.spread == pytest.approx(0.02)
    assert str(v) == "a 0.9100 vs b 0.8100: +0.1000, a better on every seed (its worst seed beats the other's best; seed ranges up to 0.0200)"


def test_verdict_outside_the_spread_names_b():
    v = verdict("x", [0.50, 0.52], "y", [0.60, 0.61])
    assert v.winner == "y"
    assert v.diff == pytest.approx(-0.095)
    assert str(v) == "x 0.5100 vs y 0.6050: -0.0950, y better on every seed (its worst seed beats the other's best; seed ranges up to 0.0200)"


def test_verdict_overlapping_ranges_name_no_winner():
    v = verdict("a", [0.80, 0.90], "b", [0.85, 0.86])
    assert v.winner is None
    assert v.spread == pytest.approx(0.10)
    assert str(v) == "a 0.8500 vs b 0.8550: -0.0050, within the seed spread (0.1000): no winner"


def test_verdict_touching_ranges_name_no_winner():
    assert verdict("a", [0.80, 0.85], "b", [0.75, 0.80]).winner is None   # a.lo == b.hi


def test_verdict_refuses_fewer_than_two_seeds():
    with pytest.raises(SeedError, match="each method needs at least 2 seeds for a spread"):
        verdict("a", [0.9], "b", [0.8, 0.7])
    with pytest.raises(SeedError, match="each method needs at least 2 seeds for a spread"):
        verdict("a", [0.9, 0.8], "b", [0.7])
    with pytest.raises(SeedError, match="no values to summarize"):
        verdict("a", [], "b", [0.8, 0.7])


def test_verdict_is_frozen():
    v = verdict("a", [0.9, 0.8], "b", [0.7, 0.6])
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.paired = True


# paired_verdict

#: per seed, A beats B every time, yet A's range (0.82–0.90) overlaps B's (0.81–0.89)
A_PAIRED, B_PAIRED = [0.82, 0.86, 0.90], [0.81, 0.84, 0.89]


def test_paired_names_a_winner_where_unpaired_ranges_overlap():
    unpaired = verdict("A", A_PAIRED, "B", B_PAIRED)
    paired = paired_verdict("A", A_PAIRED, "B", B_PAIRED)
    assert unpaired.winner is None
    assert paired.paired is True and paired.winner == "A"
    assert paired.differences == pytest.approx((0.01, 0.02, 0.01))
    assert paired.spread == pytest.approx(0.01)           # range of the differences
    assert paired.diff == pytest.approx(0.04 / 3)
    assert str(paired) == ("A 0.8600 vs B 0.8467: +0.0133, A better on every paired seed "
                           "(range of the differences 0.0100)")


def test_paired_names_b_when_every_difference_is_negative():
    v = paired_verdict("A", B_PAIRED, "B", A_PAIRED)
    assert v.winner == "B"
    assert str(v) == ("A 0.8467 vs B 0.8600: -0.0133, B better on every paired seed "
                      "(range of the differences 0.0100)")


def test_paired_mixed_signs_name_no_winner():
    v = paired_verdict("A", [0.90, 0.80, 0.85], "B", [0.85, 0.82, 0.84])
    assert v.differences == pytest.approx((0.05, -0.02, 0.01))
    assert v.winner is None
    assert v.spread == pytest.approx(0.07)
    assert str(v) == "A 0.8500 vs B 0.8367: +0.0133, within the paired differences' range (0.0700): no winner"


def test_paired_a_tie_on_one_seed_names_no_winner():
    assert paired_verdict("A", [0.9, 0.8, 0.7], "B", [0.8, 0.8, 0.6]).winner is None


def test_paired_the_seed_order_matters():
    # the same values, B's order reversed: the unpaired verdict does not change, the paired one does
    a, b = [0.80, 0.85, 0.90], [0.79, 0.84, 0.89]
    assert paired_verdict("A", a, "B", b).winner == "A"
    assert paired_verdict("A", a, "B", b[::-1]).winner is None
    assert verdict("A", a, "B", b).winner == verdict("A", a, "B", b[::-1]).winner is None


def test_paired_refuses_unequal_lengths():
    with pytest.raises(SeedError, match=re.escape(
            "a paired comparison needs one result per seed for both methods, in the same seed order; "
            "got 3 for A and 2 for B")):
        paired_verdict("A", [0.9, 0.8, 0.7], "B", [0.8, 0.7])


def test_paired_refuses_fewer_than_two_seeds():
    with pytest.raises(SeedError, match=re.escape("a paired comparison needs at least 2 seeds, got 1")):
        paired_verdict("A", [0.9], "B", [0.8])
    with pytest.raises(SeedError, match="no values to summarize"):
        paired_verdict("A", [], "B", [])


def test_the_seed_plot_is_a_dot_plot_with_a_legend_for_every_mark():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import seeds

    fig, ax = plt.subplots()
    seeds.plot(ax, {"a": [0.70, 0.72, 0.71], "b": [0.80, 0.81, 0.79]}, "accuracy", reference=0.83)
    assert not ax.patches                                  # no bars: the axis is zoomed, a bar's height would mislead
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean of the seeds", "one seed", "baseline"]
    lo, hi = ax.get_ylim()
    assert lo < 0.70 and hi > 0.83                         # every seed and the baseline inside the axis
    plt.close(fig)


def test_a_log_y_axis_labels_plain_ticks_inside_one_decade():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import report

    fig, ax = plt.subplots()
    ax.plot([0.3, 0.5, 0.7], [1.2, 1.5, 2.7])
    report.log_y(ax)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and lo <= float(t.get_text()) <= hi]
    assert {"1.5", "2"} <= set(shown)                      # labelled ticks between the data, as plain numbers
    assert float(shown[0]) <= 1.2 and float(shown[-1]) >= 2.7   # a labelled tick at or beyond each end of the data
    plt.close(fig)


def test_a_log_x_axis_puts_a_labelled_tick_on_each_side_of_the_points():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common import report

    fig, ax = plt.subplots()
    ax.scatter([5.22, 11.67], [0.45, 0.66])            # hw6's detector student and teacher, in MB
    report.log_x(ax)
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    shown = [float(t.get_text()) for t in ax.get_xticklabels() if t.get_text() and lo <= float(t.get_text()) <= hi]
    assert (lo, hi) == (5.0, 20.0) and shown == [5.0, 10.0, 20.0]   # not a lone "10" between the two points
    plt.close(fig)
