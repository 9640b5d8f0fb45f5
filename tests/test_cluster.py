"""Weight clustering: from-scratch k-means against scikit-learn, tied fine-tuning, palette storage."""

import numpy as np
import pytest
import torch

from common import cluster, workloads


def test_kmeans_matches_scikit_learn_on_a_conv_layer():
    from sklearn.cluster import KMeans

    torch.manual_seed(0)
    w = workloads.build_resnet18(10).layer2[0].conv1.weight.detach()
    for k in (4, 16):
        ours, labels = cluster.kmeans_1d(w, k, "kmeans++", iters=300, seed=0)
        start = cluster.init_centroids(w, k, "kmeans++", seed=0).reshape(-1, 1)
        ref = KMeans(n_clusters=k, init=start, n_init=1, max_iter=300, tol=0.0, algorithm="lloyd").fit(
            w.numpy().reshape(-1, 1).astype(np.float64))
        # the same Lloyd iterations from the same start: the same centroids and assignment
        assert np.allclose(np.sort(ref.cluster_centers_.ravel()), ours, atol=1e-7)
        # and a random-restart scikit-learn fit finds no better clustering than ours (within 1 %)
        best = KMeans(n_clusters=k, n_init=5, random_state=0).fit(w.numpy().reshape(-1, 1).astype(np.float64))
        assert cluster.inertia(w, ours, labels) <= best.inertia_ * 1.01


@pytest.mark.parametrize("init", cluster.INITS)
def test_every_init_gives_k_sorted_centroids_and_valid_labels(init):
    x = np.random.default_rng(0).standard_normal(5000)
    c, labels = cluster.kmeans_1d(x, 8, init)
    assert len(c) == 8 and np.all(np.diff(c) >= 0) and labels.min() >= 0 and labels.max() < 8
    assert np.array_equal(labels, np.abs(x[:, None] - c[None]).argmin(1))  # nearest centroid


@pytest.mark.parametrize("k, message", [(1, ">= 2"), (0, ">= 2"), (2.5, "integer"), (True, "integer"),
                                        (50, "only 4 distinct")])
def test_bad_cluster_counts_are_refused(k, message):
    with pytest.raises(cluster.ClusteringError, match=message):
        cluster.kmeans_1d(np.array([0.0, 1.0, 2.0, 3.0] * 10), k)


def test_unknown_init_is_refused_naming_the_choices():
    with pytest.raises(cluster.ClusteringError, match="valid: linear, kmeans\\+\\+, density"):
        cluster.kmeans_1d(np.arange(10.0), 2, "random")


def test_cluster_model_leaves_k_values_per_layer_and_tied_training_keeps_them():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 4))
    cluster.cluster_model(model, 4, tie=True)
    assert set(cluster.unique_values(model).values()) == {4}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.detach().clone()
    for _ in range(3):
        loss = model(torch.randn(5, 3, 8, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(before, model[0].weight.detach())         # the centroids moved
    assert set(cluster.unique_values(model).values()) == {4}          # and the weights stayed tied
    cluster.untie(model)
    assert isinstance(model[0].weight, torch.nn.Parameter)
    assert set(cluster.unique_values(model).values()) == {4}


@pytest.mark.parametrize("average", [True, False])
def test_a_centroid_gets_the_mean_or_the_sum_of_its_weights_gradients(average):
    torch.manual_seed(0)
    tied = torch.nn.Linear(6, 3)
    plain = torch.nn.Linear(6, 3)
    info = cluster.cluster_model(tied, 3, tie=True, average_grads=average)
    labels = torch.as_tensor(info[""]["labels"])  # the model is the layer: its name is ""
    with torch.no_grad():
        plain.weight.copy_(tied.weight)
        plain.bias.copy_(tied.bias)
    x = torch.randn(4, 6)
    tied(x).pow(2).sum().backward()
    plain(x).pow(2).sum().backward()
    g = plain.weight.grad.reshape(-1)
    expected = torch.stack([g[labels == c].sum() for c in range(3)])
    if average:
        expected = expected / torch.bincount(labels, minlength=3)
    torch.testing.assert_close(tied.parametrizations.weight[0].codebook.grad, expected)


def test_untying_a_copy_leaves_the_tied_original_working():
    """torch's remove_parametrizations edits the parametrized class a deepcopy shares; untie must not."""
    import copy

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 4))
    cluster.cluster_model(model, 4, tie=True)
    x = torch.randn(2, 3, 8, 8)
    plain = cluster.untie(copy.deepcopy(model))
    assert type(plain[0]) is torch.nn.Conv2d
    assert torch.equal(plain(x), model(x))                      # the tied original still runs
    assert parametrize_count(model) == 2 and parametrize_count(plain) == 0
    assert set(cluster.unique_values(plain).values()) == {4}


def parametrize_count(model) -> int:
    from torch.nn.utils import parametrize

    return sum(parametrize.is_parametrized(m) for m in model.modules())


def test_palette_round_trip_is_exact_and_small(tmp_path):
    torch.manual_seed(0)
    model = workloads.build_resnet18(10)
    cluster.cluster_model(model, 16)
    path = cluster.save_palette(model, tmp_path / "m.npz")
    other = workloads.build_resnet18(10)
    cluster.load_palette(other, path)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    dense_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert path.stat().st_size < dense_bytes / 6   # 4-bit indices instead of 32-bit floats
    assert not list(tmp_path.glob("*.tmp*"))


def test_palette_refuses_an_unclustered_model(tmp_path):
    with pytest.raises(cluster.ClusteringError, match="not clustered"):
        cluster.save_palette(workloads.build_resnet18(10), tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())


def test_index_packing_round_trips_for_every_width():
    rng = np.random.default_rng(0)
    for bits in range(1, 9):
        labels = rng.integers(0, 2 ** bits, 1001)
        assert np.array_equal(cluster._unpack(cluster._pack(labels, bits), bits, len(labels)), labels)
