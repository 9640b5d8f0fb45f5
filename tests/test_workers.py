"""common.workers: jobs side by side in spawned processes, one thread each, one progress bar."""

import pytest

from common import workers


def _square(x: int) -> tuple[int, int]:
    import torch

    workers.tick(2)
    return x * x, torch.get_num_threads()


def _fail(x: int) -> None:
    raise ValueError(f"bad {x}")


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_run_returns_every_job_in_order_from_one_thread_processes_and_moves_the_bar():
    bar = _Bar()
    got = workers.run(_square, {"c": {"x": 3}, "a": {"x": 1}, "b": {"x": 2}}, workers=2, threads=1, bar=bar)
    assert list(got) == ["c", "a", "b"]
    assert [v[0] for v in got.values()] == [9, 1, 4]
    assert {v[1] for v in got.values()} == {1}       # every worker ran on one thread
    assert bar.n == 6                                # two ticks per job reached the caller's bar


def test_run_with_one_worker_runs_here_and_a_failing_job_names_its_key():
    assert workers.run(_square, {"k": {"x": 5}}, workers=1)["k"][0] == 25
    with pytest.raises(RuntimeError, match=r"job 'second' failed in its worker process: bad 2"):
        workers.run(_fail, {"second": {"x": 2}}, workers=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused_before_any_work(bad):
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        workers.run(_square, {"k": {"x": 1}}, workers=bad)
