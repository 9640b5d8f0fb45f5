"""common.aa_history: the A/A ratios of committed runs, parsed once per run, and the sign test."""

from common import aa_history


def test_parse_keeps_each_ratio_once_and_flags_an_interval_off_one():
    text = ("reference (A/A 0.95, 95 % CI 0.92-0.99) ... | reference (A/A 0.95, 95 % CI 0.92-0.99) |"
            " reference (A/A 1.02, 95 % CI 0.84-1.21)")
    got = aa_history.parse(text, "hw1.ipynb", "abc")
    assert [(v.median, v.lo, v.hi) for v in got] == [(0.95, 0.92, 0.99), (1.02, 0.84, 1.21)]
    assert [v.excludes_one for v in got] == [True, False]


def test_sign_test_is_the_exact_two_sided_binomial():
    assert aa_history.sign_test(0, 0) == 1.0
    assert aa_history.sign_test(5, 5) == 1.0
    assert abs(aa_history.sign_test(0, 10) - 2 / 1024) < 1e-12
    assert abs(aa_history.sign_test(18, 10) - aa_history.sign_test(10, 18)) < 1e-12


def test_summary_counts_the_signs():
    values = aa_history.parse("A/A 0.95, 95 % CI 0.92-0.99 A/A 1.00, 95 % CI 0.9-1.1 A/A 1.03, 95 % CI 0.98-1.08")
    text = aa_history.summary(values)
    assert text.startswith("3 A/A ratios") and "1 below 1, 1 above, 1 at 1.00" in text and "intervals excluding 1: 1" in text
    assert aa_history.summary([]) == "no A/A ratio found"
