"""A Keras twin of the classifier for the TensorFlow side of the course: TFMOT weight clustering,
cluster-preserving QAT and TFLite conversion (fp32 and int8), evaluated with the LiteRT
interpreter through :mod:`common.backends` like every other runtime.

The twin trains on exactly the classifier's data (the same splits, transposed to NHWC). It is a
plain Conv / ReLU / MaxPool / Dense network with no BatchNorm on purpose: the TFLite converter
folds a BatchNorm into the kernel before it, scaling every output channel by its own factor,
which would turn 16 shared values into 16 per channel and hide what clustering did.

TensorFlow is imported lazily, after ``TF_USE_LEGACY_KERAS=1`` (TFMOT needs Keras 2, the
``tf-keras`` package) and the thread count are set.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np

from common.cluster import INITS, check_clusters, check_init
from common import files

#: our initialisation names -> TFMOT's CentroidInitialization members
TFMOT_INIT = {"linear": "LINEAR", "kmeans++": "KMEANS_PLUS_PLUS", "density": "DENSITY_BASED"}
assert set(TFMOT_INIT) == set(INITS)


@contextmanager
def quiet():
    """Silence TensorFlow's chatter for the duration: its C++ logs and the TFLite converter write
    straight to the process's stdout / stderr (with timestamps and pids), tf-keras and TFMOT
    warn through Python. Exceptions still propagate."""
    import logging
    import warnings

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    previous = logging.root.manager.disable
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        logging.disable(logging.WARNING)
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
        logging.disable(previous)


def tf_setup(threads: int = 2, seed: int | None = 0):
    """Import TensorFlow for TFMOT (legacy Keras 2) with ``threads`` threads (fixed at the first
    call: TensorFlow takes them once) and deterministic kernels; seed Python, numpy and
    TensorFlow when ``seed`` is not None. Returns the ``tensorflow`` module."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # must precede the first TensorFlow import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet():
        # torchvision imported *after* TensorFlow segfaults in this stack (a native library clash);
        # imported before it, both work, and the repository needs it anyway
        if "tensorflow" not in sys.modules and importlib.util.find_spec("torchvision") is not None:
            import torchvision  # noqa: F401
        import tensorflow as tf
        import tensorflow_model_optimization  # noqa: F401  (its import warns too)

    if "tf_keras" not in tf.keras.__name__:  # Keras 2 (the tf-keras package) is what TFMOT wraps
        raise RuntimeError("TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set, so tf.keras is "
                           "Keras 3 and TFMOT cannot wrap its layers; restart the kernel and call "
                           "keras_twin.tf_setup() before anything imports TensorFlow")
    try:  # only possible before TensorFlow's runtime has started
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel("ERROR")
    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    return tf


def nhwc(x) -> np.ndarray:
    """A torch / numpy NCHW batch as a float32 NHWC numpy array (Keras' layout)."""
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32)


def build_cnn(num_classes: int, img_size: int, channels: int = 3, width: int = 32, seed: int = 0):
    """Conv(w)-Conv(2w)-Conv(2w), each ReLU + 2x2 max-pool, then Dense(4w)-Dense(classes);
    weights initialised from ``seed``."""
    tf = tf_setup(seed=seed)
    L = tf.keras.layers
    return tf.keras.Sequential([
        L.InputLayer(input_shape=(img_size, img_size, channels)),
        L.Conv2D(width, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Conv2D(2 * width, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Conv2D(2 * width, 3, padding="same", activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(4 * width, activation="relu"), L.Dense(num_classes),
    ], name="keras_twin")


def _compile(model, lr) -> None:
    tf = tf_setup(seed=None)
    model.compile(optimizer=tf.keras.optimizers.Adam(lr),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def fit(model, data, *, epochs: int, lr: float, batch: int = 64, seed: int = 0) -> list[dict]:
    """Train (or fine-tune) ``model`` on ``data``'s training split with Adam and a cosine decay
    of ``lr`` to zero; per-epoch loss and validation accuracy. Shuffling is seeded, so two
    calls alike give the same weights."""
    if epochs < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1 and lr > 0, got {epochs}, {lr}")
    tf = tf_setup(seed=seed)
    steps = epochs * -(-len(data.y_train) // batch)
    _compile(model, tf.keras.optimizers.schedules.CosineDecay(lr, steps))  # lr -> 0
    with quiet():
        h = model.fit(nhwc(data.x_train), data.y_train.numpy(), batch_size=batch, epochs=epochs,
                      validation_data=(nhwc(data.x_val), data.y_val.numpy()), verbose=0, shuffle=True)
    return [{"epoch": i + 1, "loss": float(l), "val_accuracy": float(a)}
            for i, (l, a) in enumerate(zip(h.history["loss"], h.history["val_accuracy"]))]


def accuracy(model, data, split: str = "test") -> float:
    """Top-1 accuracy of a Keras model on a split (float32, before any conversion), computed by
    the same :func:`common.metrics.classification_metrics` as every other model's."""
    from common.metrics import classification_metrics

    x, y = data.split(split)
    preds = model.predict(nhwc(x), batch_size=256, verbose=0).argmax(1)
    return classification_metrics(y.numpy(), preds, n_classes=len(data.classes))["accuracy"]


def cluster(model, k: int, init: str, data, *, epochs: int, lr: float, seed: int = 0):
    """TFMOT: ``cluster_weights`` every Conv / Dense kernel of ``model`` to ``k`` centroids
    (``init`` one of :data:`common.cluster.INITS`), fine-tune, ``strip_clustering``. Returns
    the stripped Keras model (plain layers whose kernels hold ``k`` distinct values) and the
    fine-tune history. ``model`` is not modified."""
    k = check_clusters(k)
    check_init(init)
    tf = tf_setup(seed=seed)
    import tensorflow_model_optimization as tfmot

    ck = tfmot.clustering.keras
    clone = tf.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    with quiet():
        wrapped = ck.cluster_weights(clone, number_of_clusters=k, cluster_centroids_init=getattr(
            ck.CentroidInitialization, TFMOT_INIT[init]))
    history = fit(wrapped, data, epochs=epochs, lr=lr, seed=seed)
    with quiet():
        return ck.strip_clustering(wrapped), history


def cluster_preserving_qat(model, data, *, epochs: int, lr: float, seed: int = 0):
    """TFMOT's cluster-preserving quantization-aware training (CQAT) of a stripped clustered
    model: fake-quantized int8 training that keeps each kernel's clusters. Returns the QAT
    Keras model (convert it with :func:`to_tflite`, ``int8=True``) and its history."""
    tf_setup(seed=seed)
    import tensorflow_model_optimization as tfmot

    with quiet():
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        with tfmot.quantization.keras.quantize_scope():
            qat = tfmot.quantization.keras.quantize_apply(
                annotated, tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme())
    return qat, fit(qat, data, epochs=epochs, lr=lr, seed=seed)


def kernels(model) -> dict[str, np.ndarray]:
    """Conv / Dense kernels by layer name."""
    return {layer.name: layer.kernel.numpy() for layer in model.layers if hasattr(layer, "kernel")}


def unique_per_layer(model) -> dict[str, int]:
    """Distinct kernel values per layer (after clustering: at most k)."""
    return {name: int(len(np.unique(w))) for name, w in kernels(model).items()}


def to_tflite(model, path: str | Path, *, int8: bool = False, calibration=None,
              per_channel: bool = True) -> Path:
    """Convert a Keras model to ``path`` (written atomically). ``int8``: post-training int8
    (weights and activations, float input / output) calibrated on ``calibration`` (NCHW batch);
    a QAT model carries its own ranges and needs none. ``per_channel=False`` gives every
    kernel one scale, so a clustered layer's k shared values stay k int8 codes (per-channel
    scales map them to k different codes in every output channel)."""
    tf = tf_setup(seed=None)
    path = Path(path)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv._experimental_disable_per_channel = not per_channel
        if calibration is not None:
            calib = nhwc(calibration)
            if len(calib) == 0:
                raise ValueError("the int8 calibration set is empty")
            conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with quiet():
        blob = conv.convert()
    return files.write_bytes(path, blob)


def tflite_variant(model, path: str | Path, data, *, threads: int = 2, **convert) -> dict:
    """Convert ``model`` with :func:`to_tflite` (``convert``: int8, calibration, per_channel)
    and score the file with the LiteRT interpreter on ``data``'s test split: its path, the
    classification metrics, and its size and gzip size in MB."""
    from common import size, workloads

    p = to_tflite(model, path, **convert)
    return {"path": p, "quality": workloads.evaluate_classifier(p, data, threads=threads),
            "size": size.size_mb(p), "gzip": size.gzip_mb(p)}
