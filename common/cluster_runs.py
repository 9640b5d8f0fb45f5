"""Clustering experiments on trained models: hw4's TFMOT sweep of the Keras twin and the measured
registry rows of every clustered model (:mod:`common.cluster` holds the from-scratch algorithms,
:mod:`common.keras_twin` the TFMOT calls)."""

from __future__ import annotations

from pathlib import Path

from common import env


def tfmot_sweep(twin, data, inits: list[str], clusters: list[int], out: str | Path, calibration, *,
                epochs: int, lr: float, seed: int = 0, threads: int = env.DEFAULT_THREADS
                ) -> tuple[dict[str, dict], dict[tuple[str, int], object]]:
    """The Keras twin as float and int8 TFLite files, then for each init and cluster count:
    ``cluster_weights`` + ``epochs`` of fine-tune + strip, as float and per-tensor int8 TFLite.

    Returns the TFLite entries by name ("baseline", "int8", "tfmot <init> <k>" and its " int8";
    :func:`common.keras_twin.tflite_variant`'s dicts, the float ones with each layer's distinct
    values under "unique") and the stripped Keras models by (init, k). Checks on the way: every
    stripped kernel holds at most k values, and each float file scores its Keras model to one test
    image (XNNPACK against TensorFlow's kernels)."""
    from tqdm import tqdm

    from common import keras_twin

    out = Path(out)
    one_image = 1 / len(data.y_test)
    runs: dict[str, dict] = {}

    def entry(name, model, path, **convert):
        runs[name] = keras_twin.tflite_variant(model, out / path, data, threads=threads, **convert)
        if not convert:
            keras = keras_twin.accuracy(model, data)
            assert abs(runs[name]["quality"]["accuracy"] - keras) <= one_image, (name, runs[name]["quality"], keras)
        return runs[name]

    entry("baseline", twin, "baseline.tflite")
    entry("int8", twin, "baseline-int8.tflite", int8=True, calibration=calibration, per_channel=False)
    stripped = {}
    for init in inits:
        for k in tqdm(clusters, desc=f"TFMOT {init}"):
            s, _ = keras_twin.cluster(twin, k, init, data, epochs=epochs, lr=lr, seed=seed)
            unique = keras_twin.unique_per_layer(s)
            assert max(unique.values()) <= k, unique
            stripped[init, k] = s
            entry(f"tfmot {init} {k}", s, f"{init}-{k}.tflite")["unique"] = unique
            entry(f"tfmot {init} {k} int8", s, f"{init}-{k}-int8.tflite", int8=True, calibration=calibration,
                  per_channel=False)
    return runs, stripped


def pytorch_rows(bl, runs: dict, sizes: dict, quality: dict, clusters: list[int], init: str, ft_text: str,
                 out: str | Path, *, threads: int = env.DEFAULT_THREADS, rounds: int = 6):
    """Registry rows of one workload's clustered PyTorch models, and their speed against the baseline.

    ``runs[workload, k, fine_tuned]`` holds each model and its quality (a fine-tuned one its
    variant, from :func:`common.workloads.variant`), ``sizes[workload, k]`` the palette sizes,
    ``quality`` the baseline's. Every model is measured (size, gzip; peak RAM for the baseline and
    16 clusters) and timed in one interleaved :func:`common.speed.compare` run; each palette gets
    a row of its own with its bytes and no latency. Returns (rows, the speed comparison)."""
    from tqdm import tqdm

    from common import cluster, data, measure, registry, size, speed, workloads

    w, out = bl.config.workload, Path(out)
    dset = data.dataset_label(bl.config.dataset)
    items = [("baseline-fp32", bl, bl.model, quality, "hw1 baseline, measured here", True)]
    for k in clusters:
        for ft in (False, True):
            r = runs[w, k, ft]
            v = r.get("variant") or workloads.variant(bl, r["model"], out / w / f"kmeans-{k}-noft")
            note = f"k-means per layer, {k} clusters, {init} init" + (f", tied fine-tune {ft_text}" if ft else ", no fine-tune")
            items.append((f"kmeans-{k}" + (" ft" if ft else ""), v, r["model"], r["quality"], note, ft and k == 16))
    rows = []
    for name, v, model, q, note, ram in tqdm(items, desc=f"measuring {w}"):
        m = measure.measure(v.path, bl.input_shape, threads=threads, cpu=False, ram=ram, label=f"{w} {name}")
        dense = "" if name == "baseline-fp32" else speed.DENSE_NOTE + " (the ratio is a check that it is ~1)"
        rows.append(registry.row("hw4", w, dset, name, note, q, measure.model_figures(model, bl.input_shape),
                                 m.row(), notes=dense))
    timed = speed.compare("baseline-fp32", {name: v.path for name, v, *_ in items}, bl.input_shape, threads=threads,
                          rounds=rounds, desc=f"{w} timing")
    timed.update(rows)
    for k in clusters:
        z, r = sizes[w, k], runs[w, k, True]
        rows.append(registry.row(
            "hw4", w, dset, f"kmeans-{k} ft palette",
            f"palette: float32 codebook + {cluster.bits_per_index(k)}-bit indices per layer (cluster.save_palette)",
            r["quality"], params=size.count_params(r["model"]), size_mb=z["palette"], gzip_mb=z["palette_gzip"],
            threads=threads, notes=f"storage format: decode to the dense model to run (speed as kmeans-{k} ft)"))
    return rows, timed


def twin_method(name: str) -> str:
    """The registry's method text of a TFLite entry of :func:`tfmot_sweep` (or the CQAT one)."""
    if name == "baseline":
        return "Keras twin, TFLite float32"
    if name == "int8":
        return "Keras twin, TFLite int8 PTQ"
    if "cqat" in name:
        return "TFMOT cluster_weights 16 clusters + strip, cluster-preserving QAT, TFLite int8"
    _, init, k, *rest = name.split()
    return f"TFMOT cluster_weights {init} {k} clusters + strip, TFLite" + (" int8 PTQ" if rest else " float32")


def twin_rows(runs: dict[str, dict], params: int, input_shape: tuple[int, ...], dataset: str, cqat_note: str, *,
              threads: int = env.DEFAULT_THREADS, rounds: int = 20):
    """Registry rows of the Keras twin's TFLite files (``runs`` as :func:`tfmot_sweep` returns them,
    with the CQAT entry added), measured and timed against the float file in one interleaved run
    (``rounds``: the course's default, 20; the files are small enough that it costs seconds);
    ``cqat_note`` says how the CQAT model's initialisation was chosen. Returns (rows, the comparison)."""
    from tqdm import tqdm

    from common import measure, registry, speed

    rows = []
    for name, r in tqdm(runs.items(), desc="measuring keras_cnn"):
        ram = name in ("baseline", "int8") or name.endswith(" 16 int8")
        m = measure.measure(r["path"], input_shape, threads=threads, cpu=False, ram=ram, label=f"tflite {name}")
        rows.append(registry.row("hw4", "keras_cnn", dataset, name.replace("tfmot ", ""), twin_method(name),
                                 r["quality"], m.row(), params=params, notes=cqat_note if "cqat" in name else ""))
    timed = speed.compare("baseline", {n: r["path"] for n, r in runs.items()}, input_shape, threads=threads,
                          rounds=rounds, desc="keras_cnn timing")
    timed.update(rows, names={n.replace("tfmot ", ""): n for n in runs})
    return rows, timed
