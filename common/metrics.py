"""Classification metrics computed from a confusion matrix (tests check them against sklearn).

Detection metrics (precision, recall, mAP50, mAP50-95) come from the ultralytics validator;
see :func:`common.workloads.evaluate`.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Counts ``cm[true, pred]``."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.size} vs {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("no predictions to score")
    n = n_classes or int(max(y_true.max(), y_pred.max())) + 1
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def classification_metrics(y_true, y_pred, n_classes: int | None = None) -> dict[str, float]:
    """Accuracy and macro-averaged precision, recall and F1.

    Macro averages run over the classes present in ``y_true`` or ``y_pred`` (as scikit-learn
    does); a class never predicted contributes precision 0 (sklearn's ``zero_division=0``).
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(cm).astype(float)
    pred_pos, true_pos = cm.sum(0).astype(float), cm.sum(1).astype(float)
    present = (pred_pos + true_pos) > 0
    precision = np.divide(tp, pred_pos, out=np.zeros_like(tp), where=pred_pos > 0)
    recall = np.divide(tp, true_pos, out=np.zeros_like(tp), where=true_pos > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / cm.sum()),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
    }
