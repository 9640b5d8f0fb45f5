import time

import numpy as np
import pytest

from common.timing import measure, summarize


def test_summary_statistics_on_known_samples():
    s = summarize(list(range(1, 11)), warmup=3, batch=4, threads=2, backend="x")
    assert s.median_ms == pytest.approx(5.5)
    assert s.p90_ms == pytest.approx(np.percentile(np.arange(1, 11), 90))
    assert s.iqr_ms == pytest.approx(7.75 - 3.25)
    assert s.min_ms == 1 and s.repeats == 10 and s.warmup == 3
    assert s.mean_ms == pytest.approx(5.5)
    assert s.throughput == pytest.approx(4 * 1000 / 5.5)
    assert "median 5.500 ms" in str(s)


def test_measure_a_known_sleep():
    s = measure(lambda: time.sleep(0.01), warmup=2, repeats=15, threads=1)
    assert 10.0 <= s.median_ms < 25.0
    assert s.p90_ms >= s.median_ms >= s.min_ms >= 10.0
    assert s.repeats == 15


def test_warmup_calls_are_not_timed():
    calls = []
    s = measure(lambda: calls.append(1), warmup=7, repeats=11)
    assert len(calls) == 18 and s.repeats == 11


def test_sync_runs_after_every_timed_call():
    synced = []
    measure(lambda: None, warmup=1, repeats=5, sync=lambda: synced.append(1))
    assert len(synced) == 1 + 5


def test_max_seconds_caps_the_timed_phase():
    s = measure(lambda: time.sleep(0.02), warmup=0, repeats=1000, max_seconds=0.1)
    assert 5 <= s.repeats < 20


@pytest.mark.parametrize("kwargs", [dict(repeats=0), dict(warmup=-1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        measure(lambda: None, **kwargs)
    with pytest.raises(ValueError, match="no timing samples"):
        summarize([])
