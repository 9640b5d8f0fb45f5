"""The GPU command: every CUDA path of the course, measured headlessly, kept apart from the CPU rows.

``make gpu`` (``python -m common.gpu``) on a machine with an NVIDIA GPU writes ``results/gpu/``:

- ``training.csv``: seconds per training epoch of each workload's recipe on the CPU
  (:data:`common.workloads.TRAIN_THREADS` threads, as every baseline trains) and on CUDA, same data,
  seed and batch; and the quality of the baseline trained on CUDA (``DEVICE="cuda"``, cached apart
  from the CPU-trained one).
- ``gpu.csv``: per workload, runtime, precision and batch (:data:`BATCHES`): median and p90
  latency, throughput, device memory the runtime took (:func:`common.memory.peak_memory`, in a
  fresh process) and parity against the float32 PyTorch model on the CPU (max |diff| / max |ref|
  on the same test images). Runtimes: PyTorch eager fp32 and fp16, TorchScript, ONNX Runtime's
  CUDA provider, ONNX Runtime's TensorRT provider (fp16), and TensorRT engines built by
  ultralytics for the detector (fp32, fp16, int8). A runtime that cannot run here is a row
  whose notes say exactly what is missing (:func:`skip_reason`); no figure is ever taken from
  the CPU.
- ``environment.md`` (GPU, driver, CUDA, CPU, versions) and ``README.md`` (the tables).

Without CUDA the command writes nothing, prints the plan with each row's skip note and exits 2.
One timing harness (:func:`common.timing.measure`, with ``torch.cuda.synchronize``) for all.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import backends, data, env, export, memory, summary, timing, train, workloads
from common import files as atomic_files

BATCHES = (1, 32)
#: (runtime, precision) measured for every workload; the detector adds :data:`ENGINES`
RUNTIMES = (("pytorch", "fp32"), ("pytorch", "fp16"), ("torchscript", "fp32"),
            ("onnxruntime", "fp32"), ("tensorrt (onnxruntime)", "fp16"))
ENGINES = (("tensorrt (engine)", "fp32"), ("tensorrt (engine)", "fp16"), ("tensorrt (engine)", "int8"))
#: the GPU tables' schema lives in :mod:`common.summary` (which renders them in the results README)
COLUMNS, TRAIN_COLUMNS = summary.GPU_COLUMNS, summary.GPU_TRAIN_COLUMNS


def cases(workload_names=("resnet18", "yolov8n"), batches=BATCHES) -> list[dict]:
    """Every row the command measures, in order (checked: unknown workloads or batches < 1 raise)."""
    for w in workload_names:
        data.check_workload(w)
    if not batches or any(int(b) != b or b < 1 for b in batches):
        raise ValueError(f"batches must be whole numbers >= 1, got {list(batches)}")
    out = []
    for w in workload_names:
        for runtime, precision in RUNTIMES + (ENGINES if w == "yolov8n" else ()):
            out += [{"workload": w, "runtime": runtime, "precision": precision, "batch": b} for b in batches]
    return out


def skip_reason(runtime: str, precision: str) -> str | None:
    """Why (runtime, precision) cannot run on CUDA here, as a row's note, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "skipped: no CUDA"
    if runtime == "onnxruntime":
        why = backends.onnxruntime_cuda_missing("cuda")
    elif runtime == "tensorrt (onnxruntime)":
        why = backends.onnxruntime_cuda_missing("tensorrt")
    elif runtime == "tensorrt (engine)":
        why = backends.tensorrt_missing()
    else:
        why = None
    return None if why is None else f"skipped: {why}"


def _inputs(bl, batch: int) -> np.ndarray:
    """``batch`` test images (repeated when the split is smaller) as the model's float32 input."""
    x = workloads.sample_inputs(bl, min(batch, 64))
    return np.ascontiguousarray(np.resize(x, (batch, *x.shape[1:])))


def _artifact(bl, runtime: str, precision: str, batch: int, out: Path, gpu: bool = True) -> Path:
    """The file ``runtime`` loads for ``bl`` at ``batch`` (exported once per batch for the
    detector, whose ultralytics exports have a fixed batch; the classifier's take any batch)."""
    if runtime == "pytorch":
        return bl.path
    fmt = {"torchscript": "torchscript", "onnxruntime": "onnx", "tensorrt (onnxruntime)": "onnx"}.get(runtime)
    if bl.config.workload == "resnet18" and fmt:
        folder = out / "resnet18"
        found = sorted(folder.glob("*.torchscript" if fmt == "torchscript" else "*.onnx"))
        return found[0] if found else export.export(bl, fmt, folder).path
    # one ONNX file serves both ONNX Runtime providers; every engine precision is its own build
    folder = out / f"yolov8n-b{batch}-{fmt or 'engine-' + precision}"
    if (folder / "done").exists():
        return Path((folder / "done").read_text())
    ckpt = folder / "yolov8n.pt"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bl.ultralytics_checkpoint, ckpt)
    # traced on the GPU it runs on (a CPU trace can hold CPU constants); ONNX is device-free
    args = {"imgsz": bl.config.img_size, "batch": batch, "device": "0" if gpu and fmt != "onnx" else "cpu"}
    if runtime == "tensorrt (engine)":
        args.update(format="engine", half=precision == "fp16", int8=precision == "int8", data=str(bl.data))
    else:
        args.update(format=fmt)
    path = Path(workloads.yolo(ckpt).export(**args))
    (folder / "done").write_text(str(path))
    return path


def measure_case(bl, case: dict, out: Path, *, warmup: int = 20, repeats: int = 200,
                 _rehearse_on_cpu: bool = False) -> dict:
    """One row of ``gpu.csv`` (measured, or with the note that says why it was skipped).
    ``_rehearse_on_cpu`` runs the same steps on the CPU for the unit tests (exports, parity, timing,
    the memory child), so the code is exercised without a GPU; :func:`run` never sets it."""
    row = {"workload": bl.config.workload, "dataset": data.dataset_label(bl.config.dataset),
           **{k: case[k] for k in ("runtime", "precision", "batch")}}
    device = "cpu" if _rehearse_on_cpu else "cuda"
    why = None if _rehearse_on_cpu else skip_reason(case["runtime"], case["precision"])
    if why:
        return {**row, "notes": why}
    import torch

    batch = case["batch"]
    path = _artifact(bl, case["runtime"], case["precision"], batch, out, gpu=not _rehearse_on_cpu)
    options = {}
    if case["runtime"] in ("pytorch", "torchscript"):
        options["precision"] = case["precision"]
    elif case["runtime"] == "tensorrt (onnxruntime)":
        options.update(provider="tensorrt", precision=case["precision"])
    try:
        backend = backends.load(path, device=device, **options)
    except backends.DeviceUnavailable as e:          # listed, but could not start: still never the CPU
        return {**row, "notes": f"skipped: {e}"}
    x = _inputs(bl, batch)
    reference = backends.load(bl.path, device="cpu")(x)
    prepared = backend.prepare(x)
    got = backend.to_numpy(backend.run(prepared))
    got, reference = (export.comparable(bl.config.workload, "gpu", y, bl.config.img_size) for y in (got, reference))
    parity = float(np.abs(got - reference).max() / max(np.abs(reference).max(), 1e-12))
    stats = timing.measure(lambda: backend.run(prepared), warmup=warmup, repeats=repeats, max_seconds=60,
                           sync=backend.sync, batch=batch, backend=f"{case['runtime']} {case['precision']}")
    del backend, prepared
    if device == "cuda":
        torch.cuda.empty_cache()
    vram = memory.peak_memory(path, x.shape, device=device, **options).vram_mb
    return {**row, "latency_gpu_ms": stats.median_ms, "latency_gpu_p90_ms": stats.p90_ms,
            "throughput_ips": stats.throughput, "vram_mb": vram, "parity": parity,
            "notes": f"median of {stats.repeats} runs after {warmup} warm-up; vram: device memory the runtime "
                     f"took beyond the CUDA context (cudaMemGetInfo, fresh process); parity vs float32 PyTorch on "
                     f"the CPU, max|diff| / max|ref| on {batch} test images"}


def epoch_seconds(workload: str, device: str, out: Path) -> float:
    """Seconds of one training epoch of ``workload``'s default recipe on ``device`` (a fresh model,
    seed 0, :data:`common.workloads.TRAIN_THREADS` threads): the per-epoch cost a student pays."""
    import torch

    cfg = workloads.recipe(workload)
    before, threads = env.compute_device(), torch.get_num_threads()
    env.set_device(device)
    env.set_threads(workloads.TRAIN_THREADS)
    env.seed_everything(0)
    try:
        if workload == "resnet18":
            ds = data.load_classification(data.OFFLINE_DEFAULT[workload], cfg["img_size"], 0)
            model = workloads.build_resnet18(len(ds.classes))
            t0 = time.perf_counter()
            train.fit_classifier(model, ds, epochs=1, lr=cfg["lr"], batch=cfg["batch"], progress=False)
        else:
            y = workloads.yolo("yolov8n.yaml")
            env.set_threads(workloads.TRAIN_THREADS)
            t0 = time.perf_counter()
            train.fit_detector(y, data.detection_yaml(data.OFFLINE_DEFAULT[workload]), epochs=1,
                                   img_size=cfg["img_size"], batch=cfg["batch"], lr=cfg["lr"],
                                   project=out / f"epoch-{device}", desc=f"{workload}: one epoch on {device}")
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0
    finally:
        env.set_device(before)
        env.set_threads(threads)


def environment() -> str:
    """The GPU run's own stamp: GPU, driver, CUDA, cuDNN, CPU and library versions, date."""
    import torch

    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        driver = "unknown (no nvidia-smi)"
    return (f"GPU: {env.gpu_name()}; driver {driver}; CUDA {torch.version.cuda}; cuDNN "
            f"{torch.backends.cudnn.version()}; CPU training with {workloads.TRAIN_THREADS} threads.\n\n"
            + summary.environment_stamp("common.gpu"))


def write(out: Path, rows: list[dict], train_rows: list[dict]) -> None:
    """``gpu.csv``, ``training.csv``, ``environment.md`` and ``README.md`` under ``out``, each atomically."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    stamp = environment()
    files = {"gpu.csv": pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(index=False),
             "training.csv": pd.DataFrame(train_rows, columns=list(TRAIN_COLUMNS)).to_csv(index=False),
             "environment.md": stamp + "\n",
             "README.md": "\n".join(["# GPU results", "",
                                     "Written by `make gpu` (`python -m common.gpu`); kept apart from the CPU rows of "
                                     "`results/experiments.csv`, which the notebooks make on the CPU.", "",
                                     "## Training time per epoch", "", *summary.markdown_table(train_rows, TRAIN_COLUMNS), "",
                                     "## Inference on the GPU", "", *summary.markdown_table(rows, COLUMNS), "",
                                     "## Environment", "", stamp, ""])}
    for name, text in files.items():
        atomic_files.write_text(out / name, text)


def run(workload_names=("resnet18", "yolov8n"), batches=BATCHES, out: Path | None = None, *,
        warmup: int = 20, repeats: int = 200) -> Path:
    """Measure everything (see module doc) and write ``out`` (default ``results/gpu``)."""
    import torch
    from tqdm import tqdm

    plan = cases(workload_names, batches)
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA GPU here: the GPU command measures nothing on a CPU machine "
                           "(every row would be 'skipped: no CUDA'); run it where torch.cuda.is_available()")
    out = Path(out or env.results_dir() / "gpu")
    env.setup(seed=0)
    work = Path(tempfile.mkdtemp(prefix="nnc-gpu-"))
    try:
        train_rows, baselines = [], {}
        for w in workload_names:
            for device in ("cpu", "cuda"):
                secs = epoch_seconds(w, device, work)
                train_rows.append({"workload": w, "dataset": data.OFFLINE_DEFAULT[w], "device": device,
                                   "seconds_per_epoch": secs, "threads": workloads.TRAIN_THREADS,
                                   "notes": "one epoch of the default recipe from a fresh model, seed 0"
                                            + ("; includes CUDA's start-up, which the whole-baseline row "
                                               "averages over its epochs" if device == "cuda" else "")})
            env.set_device("cuda")                # the baseline every GPU row measures, trained on CUDA
            bl = baselines[w] = workloads.baseline(w)
            quality = workloads.evaluate(bl)
            env.set_device("cpu")
            metric = "accuracy" if w == "resnet18" else "map50_95"
            train_rows.append({"workload": w, "dataset": data.OFFLINE_DEFAULT[w], "device": "cuda",
                               "seconds_per_epoch": bl.train_seconds / bl.config.epochs,
                               "threads": workloads.TRAIN_THREADS, "quality": quality[metric],
                               "notes": f"the whole baseline ({bl.config.epochs} epochs"
                                        f"{', from the cache' if bl.cached else ''}); quality: test {metric}"})
        rows = [measure_case(baselines[c["workload"]], c, work, warmup=warmup, repeats=repeats)
                for c in tqdm(plan, desc="GPU rows")]
        write(out, rows, train_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.gpu", description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["resnet18", "yolov8n"], help=f"of {list(data.WORKLOADS)}")
    ap.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    ap.add_argument("--out", type=Path, default=None, help="default: results/gpu")
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args(argv)
    try:
        plan = cases(a.workloads, a.batches)
    except ValueError as e:
        ap.error(str(e))
    try:
        print(run(a.workloads, a.batches, a.out, repeats=a.repeats))
    except RuntimeError as e:
        if "no CUDA GPU" not in str(e):
            raise
        print(f"{e}\nplan:", file=sys.stderr)
        for c in plan:
            print(f"  {c['workload']} {c['runtime']} {c['precision']} batch {c['batch']}: "
                  f"{skip_reason(c['runtime'], c['precision'])}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
