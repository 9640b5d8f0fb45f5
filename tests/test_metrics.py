import numpy as np
import pytest
from sklearn import metrics as skm

from common.metrics import classification_metrics, confusion_matrix


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.integers(0, 10, 500))
    if seed == 3:  # a class that is never predicted and one that never occurs
        y_pred[y_pred == 4] = 5
        y_true[y_true == 7] = 8
    ours = classification_metrics(y_true, y_pred)
    assert ours["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        assert ours[name] == pytest.approx(fn(y_true, y_pred, average="macro", zero_division=0),
                                           abs=1e-12), name


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 6, 300), rng.integers(0, 6, 300)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 6),
                                  skm.confusion_matrix(y_true, y_pred, labels=range(6)))


def test_perfect_and_bad_input():
    assert classification_metrics([0, 1, 2], [0, 1, 2]) == {
        "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="no predictions"):
        classification_metrics([], [])
