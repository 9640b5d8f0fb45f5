"""hw4's TensorFlow side: TFMOT clustering of the Keras twin, TFLite conversion, quiet logs."""

import numpy as np
import pytest

from common import cluster, data, keras_twin, workloads


@pytest.fixture(scope="module")
def small():
    d = data.subset(data.load_classification("digits", 16), 200, "train")
    keras_twin.tf_setup(threads=2, seed=0)
    model = keras_twin.build_cnn(len(d.classes), d.img_size, width=8, seed=0)
    keras_twin.fit(model, d, epochs=3, lr=3e-3)
    return d, model


def test_tfmot_clustering_leaves_k_values_and_tflite_scores_like_keras(small, tmp_path, capfd):
    d, model = small
    stripped, history = keras_twin.cluster(model, 4, "kmeans++", d, epochs=1, lr=1e-3)
    assert len(history) == 1
    assert set(keras_twin.unique_per_layer(stripped).values()) <= {1, 2, 3, 4}
    assert max(keras_twin.unique_per_layer(model).values()) > 100          # the original is untouched
    v = keras_twin.tflite_variant(stripped, tmp_path / "c4.tflite", d)
    path = v["path"]
    assert v["quality"] == workloads.evaluate_classifier(path, d)
    assert abs(v["quality"]["accuracy"] - keras_twin.accuracy(stripped, d)) <= 1 / len(d.y_test)
    assert v["size"] == path.stat().st_size / 2 ** 20 and v["gzip"] < v["size"]
    int8 = keras_twin.to_tflite(stripped, tmp_path / "c4-int8.tflite", int8=True, calibration=d.x_train[:20],
                                per_channel=False)
    assert int8.stat().st_size < path.stat().st_size / 2
    assert not list(tmp_path.glob("*.tmp"))
    out, err = capfd.readouterr()
    assert "fully_quantize" not in out + err and "E0000" not in out + err    # converter chatter silenced


def test_same_seed_same_twin():
    d = data.subset(data.load_classification("digits", 16), 100, "train")
    weights = []
    for _ in range(2):
        m = keras_twin.build_cnn(len(d.classes), d.img_size, width=4, seed=3)
        keras_twin.fit(m, d, epochs=1, lr=1e-3, seed=3)
        weights.append(m.get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights))


def test_bad_settings_fail_before_any_training(small):
    d, model = small
    with pytest.raises(cluster.ClusteringError, match=">= 2"):
        keras_twin.cluster(model, 1, "linear", d, epochs=1, lr=1e-3)
    with pytest.raises(cluster.ClusteringError, match="valid: linear, kmeans\\+\\+, density"):
        keras_twin.cluster(model, 8, "random", d, epochs=1, lr=1e-3)
    with pytest.raises(ValueError, match="calibration set is empty"):
        keras_twin.to_tflite(model, "/tmp/never.tflite", int8=True, calibration=d.x_train[:0])


def test_the_tfmot_sweep_writes_every_file_and_checks_each(small, tmp_path):
    from common import cluster_runs

    d, model = small
    runs, stripped = cluster_runs.tfmot_sweep(model, d, ["linear"], [4], tmp_path, d.x_train[:20], epochs=1, lr=1e-3)
    assert list(runs) == ["baseline", "int8", "tfmot linear 4", "tfmot linear 4 int8"] and list(stripped) == [("linear", 4)]
    assert max(runs["tfmot linear 4"]["unique"].values()) <= 4 and "unique" not in runs["int8"]
    assert all(r["path"].exists() and 0 <= r["quality"]["accuracy"] <= 1 for r in runs.values())
