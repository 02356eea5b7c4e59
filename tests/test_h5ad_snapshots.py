""".h5ad (AnnData) files as snapshot time courses: the round trip into a snapshot run with its
held-out W1, the obs time column, obsm embeddings and PCs computed on load, the one-line errors, and
the message when anndata is absent. The tests write their own small .h5ad files."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from flowmatch._utils.optional import MissingDependencyError
from flowmatch.cli import main
from flowmatch.data.snapshots import bifurcation_course, load_snapshots, save_snapshots

TINY = ["--steps", "30", "--batch-size", "48", "--hidden", "16", "--eval-steps", "5", "--threads", "1", "--quiet"]
GENES = 12


@pytest.fixture
def anndata():
    return pytest.importorskip("anndata")


def _course():
    return bifurcation_course(60, times=(0, 1, 2, 3), seed=3)


def _write_h5ad(anndata, path, x, t, *, x_matrix=None, time_column="day", categorical=True, sparse=False):
    """Cells as rows: obs[time_column] the times (categorical, as single-cell files store days), obsm
    X_pca the embedding ``x``, and X a gene matrix (``x_matrix``, default random genes)."""
    import pandas as pd

    n = x.shape[0]
    genes = np.random.default_rng(0).normal(size=(n, GENES)).astype(np.float32) if x_matrix is None else x_matrix
    if sparse:
        import scipy.sparse

        genes = scipy.sparse.csr_matrix(np.where(np.abs(genes) > 0.5, genes, 0.0).astype(np.float32))
    times = pd.Categorical(t) if categorical else t
    obs = pd.DataFrame({time_column: times, "batch": ["a"] * n}, index=[f"cell{i}" for i in range(n)])
    adata = anndata.AnnData(X=genes, obs=obs)
    adata.obsm["X_pca"] = np.asarray(x, dtype=np.float32)
    adata.write_h5ad(path)
    return genes


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())["eval"]


def test_h5ad_round_trip_into_a_snapshot_run_has_the_npz_runs_held_out_w1(anndata, tmp_path):
    """The same course as .npz and as .h5ad (obsm X_pca, obs day): the same populations, and the same
    snapshot run with the same held-out W1."""
    course = _course()
    x, t = course.to_arrays()
    save_snapshots(course, tmp_path / "course.npz")
    _write_h5ad(anndata, tmp_path / "course.h5ad", x, t)
    loaded = load_snapshots(tmp_path / "course.h5ad", time_key="day", embedding="X_pca")
    assert loaded.times.tolist() == [0.0, 1.0, 2.0, 3.0]
    for a, b in zip(loaded.populations, course.populations):
        assert np.array_equal(a.numpy(), b.numpy())
    runs = {}
    for ext, extra in (("npz", []), ("h5ad", ["--time-key", "day", "--embedding", "X_pca"])):
        runs[ext] = tmp_path / f"run_{ext}"
        argv = ["train", "--snapshots", str(tmp_path / f"course.{ext}"), "--holdout", "2", "--method", "ot-cfm"]
        assert main([*argv, *extra, "--out", str(runs[ext]), "--no-plots", *TINY]) == 0
    npz, h5ad = _metrics(runs["npz"]), _metrics(runs["h5ad"])
    assert h5ad["holdout"] == 2 and h5ad["holdout_time"] == 2.0
    assert np.isfinite(h5ad["holdout_w1"]) and h5ad["holdout_w1"] > 0
    assert h5ad["holdout_w1"] == npz["holdout_w1"]
    assert [r["w1"] for r in h5ad["fit_w1"]] == [r["w1"] for r in npz["fit_w1"]]
    summary = json.loads((runs["h5ad"] / "metrics.json").read_text())
    assert summary["time_key"] == "day" and summary["embedding"] == "X_pca"


@pytest.mark.parametrize("sparse", [False, True])
def test_a_number_of_pcs_is_sklearns_seeded_pca_of_x(anndata, tmp_path, sparse):
    from sklearn.decomposition import PCA

    course = _course()
    x, t = course.to_arrays()
    genes = _write_h5ad(anndata, tmp_path / "c.h5ad", x, t, sparse=sparse)
    loaded = load_snapshots(tmp_path / "c.h5ad", time_key="day", embedding=3, seed=0)
    dense = genes.toarray() if sparse else genes
    want = PCA(n_components=3, random_state=0).fit_transform(dense)
    got = np.concatenate([p.numpy() for p in loaded.populations])
    np.testing.assert_allclose(got, want, atol=1e-4)  # the file's rows are in time order already
    again = load_snapshots(tmp_path / "c.h5ad", time_key="day", embedding="3", seed=0)  # digits as text
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(loaded.populations, again.populations))


def test_a_run_on_pcs_computed_on_load_evaluates_again_to_its_own_w1(anndata, tmp_path):
    """`flowmatch eval` reloads the file and recomputes the PCA: the held-out W1 of training again."""
    course = _course()
    x, t = course.to_arrays()
    _write_h5ad(anndata, tmp_path / "c.h5ad", x, t, x_matrix=np.concatenate([x, 0.1 * x[:, :1]], axis=1))
    run = tmp_path / "run"
    argv = ["train", "--snapshots", str(tmp_path / "c.h5ad"), "--time-key", "day", "--embedding", "2"]
    assert main([*argv, "--holdout", "1", "--out", str(run), "--no-plots", *TINY]) == 0
    assert "embedding = 2\n" in (run / "config.toml").read_text()
    assert main(["eval", str(run), "--threads", "1", "--quiet"]) == 0
    ev = json.loads((run / "eval.json").read_text())
    assert ev["holdout_w1"] == pytest.approx(_metrics(run)["holdout_w1"], rel=1e-6)


def test_x_itself_and_the_default_time_column(anndata, tmp_path):
    x, t = _course().to_arrays()
    _write_h5ad(anndata, tmp_path / "c.h5ad", x, t, x_matrix=x, time_column="Time", categorical=False)
    loaded = load_snapshots(tmp_path / "c.h5ad")  # obs column "Time" found as the time; features X
    assert loaded.times.tolist() == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_array_equal(np.concatenate([p.numpy() for p in loaded.populations]), x)


@pytest.mark.parametrize(
    "flags, parts",
    [
        (["--time-key", "hour"], ["time_key must be a column of obs", "got 'hour'", "['day', 'batch']"]),
        (["--time-key", "batch"], ["time_key column 'batch' must hold numbers", "'a'"]),
        ([], ["needs time_key", "obs columns ['day', 'batch']"]),
        (["--time-key", "day", "--embedding", "X_umap"], ["embedding must be an obsm key", "'X_umap'", "['X_pca']"]),
        (["--time-key", "day", "--embedding", "0"], ["embedding must be an obsm key", "got 0"]),
        (["--time-key", "day", "--embedding", "13"], ["at most min(cells, genes) = 12 principal components", "got 13"]),
        (["--snapshots", "{npz}", "--time-key", "day"], ["time_key applies to .h5ad snapshot files", "'day'"]),
        (["--snapshots", "{npz}", "--embedding", "X_pca"], ["embedding applies to .h5ad snapshot files"]),
        (["--snapshots", "{broken}", "--time-key", "day"], ["malformed snapshot h5ad"]),
    ],
)
def test_bad_h5ad_input_exits_2_with_one_line_and_writes_nothing(anndata, tmp_path, capsys, flags, parts):
    x, t = _course().to_arrays()
    files = {"h5ad": tmp_path / "c.h5ad", "npz": tmp_path / "c.npz", "broken": tmp_path / "broken.h5ad"}
    _write_h5ad(anndata, files["h5ad"], x, t)
    np.savez(files["npz"], x=x, t=t)
    files["broken"].write_bytes(b"not an hdf5 file")
    out = tmp_path / "run"
    argv = ["train", "--snapshots", str(files["h5ad"]), "--out", str(out), *TINY]
    assert main(argv + [f.format(**files) for f in flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("flowmatch: error:"), err
    for part in parts:
        assert part in err, (part, err)
    assert not out.exists()


def test_without_anndata_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.h5ad"
    path.write_bytes(b"")  # never opened: the import comes first
    monkeypatch.setitem(sys.modules, "anndata", None)  # import anndata -> ImportError
    hint = "reading .h5ad needs the anndata package: pip install flowmatch[single-cell]"
    with pytest.raises(MissingDependencyError, match=r"reading \.h5ad needs the anndata package") as err:
        load_snapshots(path)
    assert str(err.value) == hint and isinstance(err.value, ImportError)
    assert main(["train", "--snapshots", str(path), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert capsys.readouterr().err == f"flowmatch: error: {hint}\n"
    assert not (tmp_path / "run").exists()
