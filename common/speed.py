"""Speed-ups a reviewer can rerun: a reference and its candidates timed in one run, interleaved.

Why: on a shared 2-vCPU VM an absolute latency is a snapshot. The same eager-PyTorch file
drifts inside one process, and a 2-thread pool on 2 vCPUs doubles its time whenever any other
process runs; the notebooks therefore time on one thread (``THREADS = 1``, measured in
``docs/measuring-speed.md``) and compare models only side by side, in the same minutes. So every
speed-up in the course is measured here and nowhere else:

- **Worker per runtime.** Each runtime (PyTorch, TorchScript, ONNX Runtime, OpenVINO, LiteRT)
  runs in its own process that imports only that runtime, kept alive across rounds, with the
  same fixed thread count; while one is timed the others wait on a pipe, so no other thread
  pool competes with it. The notebook's own process only sends commands.
- **Interleaved rounds.** Each round times the reference, then every candidate (order rotated
  round to round), then the reference again; each block of ``block`` calls follows its own
  ``warmup`` calls. Drift of the machine hits every model of a round alike.
- **Ratios with an interval.** A candidate's speed-up is the median over rounds of
  (reference median in that round / candidate median in that round), with a bootstrap 95 %
  interval over rounds. The reference's two blocks per round give an A/A ratio: its interval is
  the harness's measured noise in this run.
- **Words.** :func:`words` is the only place that says "faster" or "slower": only when the whole
  interval clears 1 by more than the noise; otherwise "no measurable difference".
"""

from __future__ import annotations

import atexit
import gc
import math
import os
import pickle
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from common import env

ROUNDS, BLOCK, WARMUP = 20, 6, 2
#: under ``make test`` (``NNC_QUICK_TIMING``): few rounds, tiny blocks; no test compares them
QUICK_ROUNDS, QUICK_BLOCK, QUICK_WARMUP = 3, 3, 1
#: a difference inside this fraction is never called real, whatever the A/A interval says
MIN_NOISE = 0.03
CONFIDENCE = 0.95
BOOTSTRAP = 2000
#: a block lasts at least this long: a fast model gets more calls per block (up to MAX_BLOCK), so that
#: a sub-millisecond model is not timed in blocks shorter than the scheduler's time slice
MIN_BLOCK_MS, MAX_BLOCK = 25.0, 200
#: a model's blocks must last this long in all before what else ran beside them is reported
MIN_BACKGROUND_S = 0.25
#: seconds between blocks, so that a runtime's spinning worker threads go idle before the next
PAUSE_S = 0.005
#: longer pauses after a block of these runtimes: ONNX Runtime's intra-op threads keep spinning after
#: a call returns. Measured on hw2's detector set (2-vCPU AMD EPYC): with 5 ms after every block the
#: TFLite fp32 model came out 3.1-3.7x faster than PyTorch when ONNX Runtime sessions were in the run
#: and 5.3-5.6x when they were not; 30 ms gave 4.4x, 100 ms 5.0x
COOLDOWN_S = {"onnxruntime": 0.1}
#: the registry columns a paired comparison fills (``common.registry.COLUMNS``)
COLUMNS = ("latency_cpu_ms", "latency_cpu_p90_ms", "speedup", "speedup_lo", "speedup_hi",
           "speedup_noise", "speedup_vs")
#: a row whose format cannot be faster on dense kernels: its ratio is only checked to be ~1
DENSE_NOTE = "dense kernels: no speed-up expected"

#: times ``n`` calls after ``warmup`` untimed ones; returns the ``n`` per-call times in ms
Timer = Callable[[int, int], list[float]]


class SpeedError(ValueError):
    """Bad input to a comparison (raised before any model is loaded)."""


def time_calls(fn: Callable[[], object], warmup: int, n: int) -> list[float]:
    """``warmup`` untimed calls of ``fn``, then ``n`` timed ones (ms each), garbage collector off."""
    for _ in range(warmup):
        fn()
    was = gc.isenabled()
    gc.disable()
    try:
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out
    finally:
        if was:
            gc.enable()


def bootstrap_median(values: Sequence[float], *, confidence: float = CONFIDENCE,
                     resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """Median of ``values`` and its percentile-bootstrap interval (seeded: reproducible)."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        raise SpeedError("no values to summarise")
    med = float(np.median(a))
    if a.size == 1:
        return med, med, med
    boots = np.median(np.random.default_rng(seed).choice(a, size=(resamples, a.size)), axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return med, min(float(lo), med), max(float(hi), med)   # the interval always holds its estimate


@dataclass(frozen=True)
class Speed:
    """One candidate against its reference, from one interleaved run."""

    name: str
    reference: str
    runtime: str
    median_ms: float
    p90_ms: float
    speedup: float
    lo: float
    hi: float
    noise: float
    rounds: int
    block: int
    threads: int
    batch: int = 1

    @property
    def is_reference(self) -> bool:
        return self.name == self.reference

    @property
    def verdict(self) -> str:
        """Words for the speed-up (:func:`words`); for the reference, its A/A noise."""
        if self.is_reference:
            return f"reference (A/A {self.speedup:.2f}, 95 % CI {self.lo:.2f}-{self.hi:.2f})"
        return words(self.speedup, self.lo, self.hi, self.noise)

    def columns(self) -> dict:
        """Registry columns (:data:`COLUMNS`)."""
        return {"latency_cpu_ms": self.median_ms, "latency_cpu_p90_ms": self.p90_ms,
                "speedup": self.speedup, "speedup_lo": self.lo, "speedup_hi": self.hi,
                "speedup_noise": self.noise, "speedup_vs": self.reference}


def decision(speedup: float, lo: float, hi: float, noise: float = MIN_NOISE) -> str:
    """"faster", "slower" or "same": the whole interval beyond the noise band, or not."""
    band = 1 + max(noise, MIN_NOISE)
    if lo > band:
        return "faster"
    if hi < 1 / band:
        return "slower"
    return "same"


def words(speedup: float, lo: float, hi: float, noise: float = MIN_NOISE) -> str:
    """The one sentence fragment for a speed-up: "2.31x faster (95 % CI 2.20-2.45)", "1.80x slower
    (95 % CI 1.70-1.92)" or "no measurable difference (1.02x, 95 % CI 0.97-1.06)", which names the
    noise band when the interval excludes 1 but lies inside the band."""
    if not (lo <= speedup <= hi):
        raise SpeedError(f"the interval {lo}-{hi} must contain the speed-up {speedup}")
    d = decision(speedup, lo, hi, noise)
    if d == "faster":
        return f"{speedup:.2f}x faster (95 % CI {lo:.2f}-{hi:.2f})"
    if d == "slower":
        return f"{1 / speedup:.2f}x slower (95 % CI {1 / hi:.2f}-{1 / lo:.2f})"
    if lo > 1 or hi < 1:   # the interval clears 1 but not the noise band: say which band
        return (f"no measurable difference ({speedup:.2f}x, 95 % CI {lo:.2f}-{hi:.2f}, inside this run's "
                f"A/A noise of ±{max(noise, MIN_NOISE) * 100:.0f} %)")
    return f"no measurable difference ({speedup:.2f}x, 95 % CI {lo:.2f}-{hi:.2f})"


def time_words(speedup: float, lo: float, hi: float, noise: float = MIN_NOISE) -> str:
    """:func:`words`' verdict written as a time ratio (this model's time over the one it is
    compared with), for step tables: "time x1.31 (95 % CI 1.29-1.60): slower, noise ±12 %"."""
    d = decision(speedup, lo, hi, noise)
    verdict = {"faster": "faster", "slower": "slower", "same": "no measurable difference"}[d]
    return (f"time x{1 / speedup:.2f} (95 % CI {1 / hi:.2f}-{1 / lo:.2f}): {verdict}, "
            f"noise ±{max(noise, MIN_NOISE) * 100:.0f} %")


def against_target(s: Speed, target: float) -> str:
    """Whether a speed-up meets ``target`` (x): "met" only when the whole interval is at or above
    it, "not met" when the whole interval is below, otherwise "undecided" (the interval straddles it)."""
    if s.lo >= target:
        return "met"
    if s.hi < target:
        return "not met"
    return "undecided: the interval contains the target"


def interleave(timers: Mapping[str, Timer], reference: str, *, rounds: int = ROUNDS,
               block: int = BLOCK, warmup: int = WARMUP, pause: float = 0.0,
               pause_after: Mapping[str, float] | None = None,
               progress: Callable[[], None] | None = None) -> dict[str, list[np.ndarray]]:
    """Time every timer in ``rounds`` rounds: reference, each candidate (rotated), reference.
    Before each block it waits ``pause`` seconds, or ``pause_after[previous]`` after that model.

    Returns per name a list (one entry per round) of that round's samples in ms; the
    reference's list has two entries per round (its first and its closing block).
    """
    if reference not in timers:
        raise SpeedError(f"reference {reference!r} is not among {list(timers)}")
    if rounds < 2 or block < 1 or warmup < 0:
        raise SpeedError(f"need rounds >= 2, block >= 1, warmup >= 0; got {rounds}, {block}, {warmup}")
    cands = [n for n in timers if n != reference]
    out: dict[str, list[np.ndarray]] = {n: [] for n in timers}
    pause_after, previous = pause_after or {}, None
    for r in range(rounds):
        k = r % len(cands) if cands else 0
        for name in [reference, *cands[k:], *cands[:k], reference]:
            wait = pause_after.get(previous, pause)
            if wait:
                time.sleep(wait)
            previous = name
            out[name].append(np.asarray(timers[name](warmup, block), dtype=float))
        if progress:
            progress()
    return out


def summarize(samples: Mapping[str, list[np.ndarray]], reference: str, *, block: int,
              threads: int, runtimes: Mapping[str, str] | None = None,
              seed: int = 0, batch: int = 1) -> dict[str, Speed]:
    """Per name: median / p90 of all its samples and the speed-up against ``reference``."""
    ref = samples[reference]
    rounds = len(ref) // 2
    first, closing = ref[0::2], ref[1::2]
    ref_round = [float(np.median(np.concatenate([a, b]))) for a, b in zip(first, closing)]
    aa = [float(np.median(a) / np.median(b)) for a, b in zip(first, closing)]
    aa_med, aa_lo, aa_hi = bootstrap_median(aa, seed=seed)
    noise = max(MIN_NOISE, aa_hi - 1, 1 - aa_lo)
    runtimes = runtimes or {}
    out = {}
    for name, blocks in samples.items():
        pooled = np.concatenate(blocks)
        if name == reference:
            sp, lo, hi = aa_med, aa_lo, aa_hi
        else:
            ratios = [rm / float(np.median(b)) for rm, b in zip(ref_round, blocks)]
            sp, lo, hi = bootstrap_median(ratios, seed=seed)
        out[name] = Speed(name, reference, runtimes.get(name, ""), float(np.median(pooled)),
                          float(np.percentile(pooled, 90)), sp, lo, hi, noise, rounds, block, threads, batch)
    return out


def round_medians(samples: Mapping[str, list[np.ndarray]], reference: str) -> dict[str, list[float]]:
    """Per name, its median in each round (the reference's two blocks pooled)."""
    ref = samples[reference]
    out = {n: [float(np.median(b)) for b in blocks] for n, blocks in samples.items() if n != reference}
    out[reference] = [float(np.median(np.concatenate([a, b]))) for a, b in zip(ref[0::2], ref[1::2])]
    return out


# --- what else ran on the machine while a model was timed -------------------------------------

def cpu_snapshot(pid: int) -> tuple[float, int, int, int] | None:
    """(monotonic s, busy jiffies of all CPUs, steal jiffies, jiffies of process ``pid`` and its
    threads) from ``/proc``; None where there is no ``/proc`` (not Linux) or ``pid`` is gone."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        own = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return time.monotonic(), user + nice + system + irq + softirq, steal, int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


class Background:
    """CPU time that everything but the timed worker used during each model's blocks (the parent,
    other workers, other programs), and the hypervisor's steal, in CPUs (1.0 = one CPU busy)."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}   # name -> [wall s, other CPU s, steal s]

    def add(self, name: str, before, after) -> None:
        if before is None or after is None or after[0] <= before[0]:
            return
        hz = os.sysconf("SC_CLK_TCK")
        wall, busy, steal, own = (b - a for a, b in zip(before, after))
        t = self.totals.setdefault(name, [0.0, 0.0, 0.0])
        t[0] += wall
        t[1] += max(busy - own, 0) / hz
        t[2] += steal / hz

    def cpus(self) -> dict[str, tuple[float, float]]:
        """Per model: (other processes' CPUs, steal CPUs), averaged over its blocks; a model whose
        blocks lasted under :data:`MIN_BACKGROUND_S` in all is left out (``/proc`` counts 10 ms ticks)."""
        return {n: (o / w, st / w) for n, (w, o, st) in self.totals.items() if w >= MIN_BACKGROUND_S}


# --- worker processes, one per runtime -------------------------------------------------------

def _serve(conn, kind: str, threads: int) -> None:
    """A worker's loop: load models of one runtime, time them on request."""
    from common import backends

    if kind in ("pytorch", "torchscript"):
        env.set_threads(threads)
    models: dict[str, tuple] = {}
    while True:
        msg = conn.recv()
        try:
            if msg[0] == "stop":
                conn.send(("ok", None))
                return
            if msg[0] == "load":
                _, key, path, shape = msg
                b = backends.load(path, threads=threads)
                x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
                prepared = b.prepare(x)
                b.run(prepared)
                models[key] = (b, prepared)
                conn.send(("ok", b.name))
            elif msg[0] == "probe":   # median of 5 calls: how many calls make a block last MIN_BLOCK_MS
                b, prepared = models[msg[1]]
                conn.send(("ok", float(np.median(time_calls(lambda: b.run(prepared), 1, 5)))))
            elif msg[0] == "time":
                _, key, warmup, n = msg
                b, prepared = models[key]
                conn.send(("ok", time_calls(lambda: b.run(prepared), warmup, n)))
            elif msg[0] == "drop":
                models.clear()
                gc.collect()
                conn.send(("ok", None))
        except Exception as e:  # reported to the caller, who raises it
            conn.send(("error", f"{type(e).__name__}: {e}"))


class _Pipe:
    """Pickled messages over a pair of binary streams."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def send(self, obj) -> None:
        pickle.dump(obj, self.writer, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.flush()

    def recv(self):
        return pickle.load(self.reader)


class Worker:
    """A process (``python -m common.speed KIND THREADS``) that imports one runtime and times
    its models on request; its own prints go nowhere, so they cannot reach a notebook."""

    def __init__(self, kind: str, threads: int):
        self.kind, self.threads = kind, threads
        self.proc = subprocess.Popen([sys.executable, "-m", "common.speed", kind, str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, cwd=env.REPO_ROOT)
        self.conn = _Pipe(self.proc.stdout, self.proc.stdin)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, *msg):
        try:
            self.conn.send(msg)
            status, payload = self.conn.recv()
        except (EOFError, BrokenPipeError, pickle.UnpicklingError) as e:
            raise RuntimeError(f"the {self.kind} timing worker died (exit code {self.proc.poll()}) "
                               f"during {msg[0]!r}: {type(e).__name__}") from None
        if status == "error":
            raise RuntimeError(f"{self.kind} worker: {payload}")
        return payload

    def close(self) -> None:
        if self.alive():
            try:
                self.call("stop")
            except RuntimeError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_WORKERS: dict[tuple[str, int], Worker] = {}


def worker(kind: str, threads: int) -> Worker:
    """The live worker of a runtime and thread count (started on first use, reused after)."""
    w = _WORKERS.get((kind, threads))
    if w is None or not w.alive():
        w = _WORKERS[kind, threads] = Worker(kind, threads)
    return w


@atexit.register
def shutdown() -> None:
    """Stop every worker (also at interpreter exit)."""
    for w in list(_WORKERS.values()):
        w.close()
    _WORKERS.clear()


def _settings(rounds: int | None, block: int | None, warmup: int | None) -> tuple[int, int, int]:
    from common.measure import quick_timing

    if quick_timing():
        return QUICK_ROUNDS, QUICK_BLOCK, QUICK_WARMUP
    return rounds or ROUNDS, block or BLOCK, WARMUP if warmup is None else warmup


def compare(reference: str, models: Mapping[str, str | Path], input_shape: tuple[int, ...], *,
            threads: int = env.DEFAULT_THREADS, rounds: int | None = None, block: int | None = None,
            warmup: int | None = None, desc: str = "timing") -> "Comparison":
    """Time ``models`` (name -> saved model, any format :mod:`common.backends` loads) against
    ``models[reference]``, interleaved, each runtime in its own worker; see the module doc.

    Under ``make test`` (``NNC_QUICK_TIMING``) it runs :data:`QUICK_ROUNDS` tiny rounds.
    """
    from tqdm import tqdm  # text bars: no ipywidgets needed, no warnings

    from common import backends

    if reference not in models:
        raise SpeedError(f"reference {reference!r} is not one of the models {list(models)}")
    if threads < 1:
        raise SpeedError(f"threads must be >= 1, got {threads}")
    kinds = {}
    for name, path in models.items():
        if not isinstance(path, (str, Path)):
            raise SpeedError(f"{name!r}: pass the path of a saved model (workers load it), "
                             f"not a {type(path).__name__}")
        if not Path(path).exists():
            raise SpeedError(f"{name!r}: {path} does not exist")
        kinds[name] = backends.kind_of(path)
    rounds, block, warmup = _settings(rounds, block, warmup)
    timers: dict[str, Timer] = {}
    runtimes, blocks, background = {}, {}, Background()
    used = set()
    quick = rounds == QUICK_ROUNDS and block == QUICK_BLOCK
    try:
        for i, (name, path) in enumerate(models.items()):
            w = worker(kinds[name], threads)
            used.add(w)
            key = f"m{i}"
            runtimes[name] = w.call("load", key, str(path), tuple(input_shape))
            first_ms = w.call("probe", key)
            blocks[name] = block if quick else min(MAX_BLOCK, max(block, math.ceil(MIN_BLOCK_MS / max(first_ms, 1e-3))))
            timers[name] = (lambda w, key, n_calls, name: lambda wu, n: _timed_block(background, name, w, key, wu, n_calls))(
                w, key, blocks[name], name)
        bar = tqdm(total=rounds, desc=desc, leave=True, mininterval=2.0)
        samples = interleave(timers, reference, rounds=rounds, block=block, warmup=warmup, pause=PAUSE_S,
                             pause_after={n: COOLDOWN_S[k] for n, k in kinds.items() if k in COOLDOWN_S},
                             progress=bar.update)
        bar.close()
    finally:
        for w in used:
            if w.alive():
                w.call("drop")
    speeds = summarize(samples, reference, block=block, threads=threads, runtimes=runtimes, batch=input_shape[0])
    speeds = {n: replace(s, block=blocks[n]) for n, s in speeds.items()}
    return Comparison(speeds, reference, rounds, block, warmup, threads, round_medians(samples, reference),
                      background.cpus())


def _timed_block(background: Background, name: str, w: Worker, key: str, warmup: int, n_calls: int) -> list[float]:
    """One block of ``name`` in worker ``w``, with what the rest of the machine used meanwhile."""
    before = cpu_snapshot(w.proc.pid)
    out = w.call("time", key, warmup, n_calls)
    background.add(name, before, cpu_snapshot(w.proc.pid))
    return out


@dataclass
class Comparison:
    """The result of :func:`compare`: one :class:`Speed` per model."""

    speeds: dict[str, Speed]
    reference: str
    rounds: int
    block: int
    warmup: int
    threads: int
    medians: dict[str, list[float]] = field(default_factory=dict)
    #: per model: (CPUs that everything else used, hypervisor steal in CPUs) during its blocks
    background: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Speed:
        if name not in self.speeds:
            raise KeyError(f"{name!r} was not timed; timed: {list(self.speeds)}")
        return self.speeds[name]

    @property
    def noise(self) -> float:
        return self.speeds[self.reference].noise

    def between(self, name: str, versus: str) -> Speed:
        """``name`` against another model of the same run (e.g. int8 vs fp32 in one runtime): the
        median of their per-round ratios and its interval, with this run's noise."""
        a, b = self[name], self[versus]
        ratios = [y / x for x, y in zip(self.medians[name], self.medians[versus])]
        sp, lo, hi = bootstrap_median(ratios)
        return Speed(name, versus, a.runtime, a.median_ms, a.p90_ms, sp, lo, hi, self.noise,
                     self.rounds, self.block, self.threads, a.batch)

    def tied(self, a: str, b: str) -> bool:
        """Whether two models of this run show no measurable difference (:meth:`between`, :func:`decision`)."""
        return decision(*_triple(self.between(a, b)), self.noise) == "same"

    def decision(self, name: str) -> str:
        """``name`` against the reference in this run: "faster", "slower" or "same" (:func:`decision`;
        the reference itself: "same")."""
        return "same" if name == self.reference else decision(*_triple(self[name]), self.noise)

    def same_rank(self, a: str, b: str) -> bool:
        """Whether :meth:`groups` may put ``a`` and ``b`` in one rank: tied (:meth:`tied`) and the
        same verdict against the reference (the reference's own verdict being "same")."""
        return self.decision(a) == self.decision(b) and self.tied(a, b)

    def beats_reference(self, name: str) -> bool:
        """Whether ``name`` is measurably faster than the reference in this run."""
        return self.decision(name) == "faster"

    def groups(self, names: Sequence[str] | None = None) -> list[list[str]]:
        """``names`` (default every model but the reference) fastest first, in groups that share a
        rank: a model joins the group of the one just above it when :meth:`same_rank` holds for those
        two neighbours (no measurable difference, paired in this run, and the same verdict against the
        reference), so every "=" and ">" rests on one printed pair; the ends of a long group may
        differ measurably (:meth:`ranking` prints each pair)."""
        names = [n for n in (names or self.speeds) if n != self.reference]
        if not names:
            raise SpeedError("no candidate to rank: only the reference was timed")
        out: list[list[str]] = []
        for n in sorted(names, key=lambda n: -self[n].speedup):
            if out and self.same_rank(out[-1][-1], n):
                out[-1].append(n)
            else:
                out.append([n])
        return out

    def fastest(self, names: Sequence[str] | None = None) -> list[str]:
        """The first group of :meth:`groups`: the fastest of ``names`` (default: every candidate,
        never the reference) and the ones tied with it, fastest first."""
        return self.groups(names)[0]

    def ranking(self, names: Sequence[str] | None = None, note: Callable[[str], str] | None = None) -> str:
        """``names`` (default every candidate) fastest first, as :meth:`groups`: "=" between two
        neighbours that share a rank, ">" between ranks, and after a model the paired ratio of it and
        its upper neighbour wherever the symbol is not plain from the two intervals against the
        reference (every "=", every ">" whose intervals overlap, and a ">" between a tied pair whose
        verdicts against the reference differ, with that reason): "tflite 1.92x (1.78-2.04) = onnx
        1.88x (1.82-1.97) [tflite / onnx 1.02x (0.97-1.08)] > openvino 1.75x (1.58-1.81) [onnx /
        openvino 1.07x (1.05-1.10)]"; ``note(name)`` adds to the parentheses (e.g. quality)."""
        def item(n: str) -> str:
            return f"{n} {self[n].speedup:.2f}x ({self[n].lo:.2f}-{self[n].hi:.2f}{'; ' + note(n) if note else ''})"

        order = [n for g in self.groups(names) for n in g]
        out = item(order[0])
        for a, b in zip(order, order[1:]):
            same = self.same_rank(a, b)
            out += (" = " if same else " > ") + item(b)
            tied = self.tied(a, b)
            if same or tied or self[b].hi >= self[a].lo:
                p = self.between(a, b)
                why = ""
                if tied and not same:   # tied as a pair, yet a different verdict against the reference
                    d = self.decision(b)
                    why = f": no measurable difference, but {b} is " + (
                        f"no different from {self.reference}" if d == "same" else f"{d} than {self.reference}")
                out += f" [{a} / {b} {p.speedup:.2f}x ({p.lo:.2f}-{p.hi:.2f}){why}]"
        return out

    def frame(self) -> "pandas.DataFrame":
        """One row per model: runtime, median / p90 ms, speed-up and interval, verdict (shown whole:
        pandas would cut a verdict at 50 characters)."""
        import pandas as pd

        if (pd.get_option("display.max_colwidth") or 10**6) < 100:
            pd.set_option("display.max_colwidth", 100)

        rows = [{"model": s.name, "runtime": s.runtime, "median ms": round(s.median_ms, 2),
                 "p90 ms": round(s.p90_ms, 2), "speed-up": round(s.speedup, 2),
                 "95 % CI": f"{s.lo:.2f}-{s.hi:.2f}", "verdict": s.verdict}
                for s in self.speeds.values()]
        return pd.DataFrame(rows)

    def pairs(self, pairs: Sequence[tuple[str, str]]) -> "pandas.DataFrame":
        """One row per (model, versus) pair of this run (:meth:`between`): the speed-up of each
        step on its own, e.g. int8 against fp32 inside one runtime, fp32 runtime against eager."""
        import pandas as pd

        rows = []
        for name, versus in pairs:
            s = self.between(name, versus)
            rows.append({"model": name, "versus": versus, "speed-up": round(s.speedup, 2),
                         "95 % CI": f"{s.lo:.2f}-{s.hi:.2f}", "verdict": s.verdict})
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """How it was measured, one sentence (for under the table)."""
        most = max(s.block for s in self.speeds.values())
        calls = (f"{self.block} calls per model" if most == self.block else
                 f"{self.block} calls per model (more for a fast model, up to {most}, so that a block lasts at "
                 f"least {MIN_BLOCK_MS:g} ms)")
        return (f"Timed in one run: {self.rounds} interleaved rounds of {calls} "
                f"after {self.warmup} warm-up calls each, batch as given, {self.threads} thread{'s' * (self.threads > 1)}, "
                f"each runtime in its own worker process; speed-up = median over rounds of the "
                f"reference's time / the model's, 95 % bootstrap interval over rounds. {self.describe_noise()} "
                f"A model is called faster (or slower) only "
                f"when its whole interval lies above {1 + self.noise:.2f}x (or below 1/{1 + self.noise:.2f}); "
                "otherwise \"no measurable difference\". Absolute times are this machine's at this "
                "moment: only ratios from one run are compared." + self.describe_background())

    def describe_noise(self) -> str:
        """The reference's measured A/A interval and the noise band the verdicts use: the larger of
        that interval's half-width and the course's floor (:data:`MIN_NOISE`)."""
        ref = self.speeds[self.reference]
        measured = max(ref.hi - 1, 1 - ref.lo, 0.0)
        band = (f"the noise band is that, ±{self.noise * 100:.0f} %" if measured >= MIN_NOISE else
                f"the noise band is the course's floor, ±{self.noise * 100:.0f} %, which is wider")
        return (f"The reference against itself (A/A) in this run: {ref.speedup:.2f}x, 95 % CI "
                f"{ref.lo:.2f}-{ref.hi:.2f} (±{measured * 100:.0f} %); {band}.")

    def describe_background(self) -> str:
        """What else used the machine while the models ran (empty when it was not measured)."""
        if not self.background:
            return ""
        other = {n: o for n, (o, _) in self.background.items()}
        busiest = max(other, key=other.get)
        steal = max(st for _, st in self.background.values())
        return (f" Everything else on the machine used {sum(other.values()) / len(other):.2f} CPU on average while "
                f"the models ran (at most {other[busiest]:.2f}, during the blocks of {busiest})"
                + (f"; the hypervisor took up to {steal:.2f} CPU" if steal >= 0.01 else "") + ".")

    def update(self, rows: Sequence[dict], *, names: Mapping[str, str] | None = None) -> None:
        """Fill :data:`COLUMNS` of every registry row whose ``name`` was timed; ``names`` maps a
        row's name to the timed model's name where they differ."""
        names = dict(names or {})
        row_of = {v: k for k, v in names.items()}
        for row in rows:
            timed = names.get(row["name"], row["name"])
            if timed in self.speeds:
                row.update(self.speeds[timed].columns(), speedup_vs=row_of.get(self.reference, self.reference))


def _triple(s: Speed) -> tuple[float, float, float]:
    return s.speedup, s.lo, s.hi


def row_words(row: Mapping) -> str:
    """The verdict of a registry row that carries speed-up columns, or "" when it has none."""
    def num(v):
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(f) else f

    sp, lo, hi = num(row.get("speedup")), num(row.get("speedup_lo")), num(row.get("speedup_hi"))
    if sp is None or lo is None or hi is None:
        return ""
    if row.get("speedup_vs") == row.get("name"):
        return "reference"
    return words(sp, lo, hi, num(row.get("speedup_noise")) or MIN_NOISE)


def _main(argv: list[str]) -> None:
    """Worker entry point: the protocol runs on the original stdin / stdout; fd 1 then points
    at /dev/null so that a runtime's prints cannot corrupt it."""
    kind, threads = argv[0], int(argv[1])
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")
    _serve(_Pipe(sys.stdin.buffer, writer), kind, threads)


if __name__ == "__main__":
    _main(sys.argv[1:])
