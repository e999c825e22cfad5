"""lmm.plot: every function renders to a PNG, and draws the numbers of the fit."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lmm  # noqa: E402
import lmm.plot as lp  # noqa: E402


@pytest.fixture(scope="module")
def sleep_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        return lmm.lmer("Reaction ~ Days + (Days | Subject)", data=lmm.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def penicillin_fit():
    return lmm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", data=lmm.datasets.load("Penicillin"))


@pytest.fixture(scope="module")
def dyestuff_profile():
    fit = lmm.lmer("Yield ~ 1 + (1 | Batch)", data=lmm.datasets.load("Dyestuff"))
    return fit, fit.profile(npoints=7)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def save(fig_or_ax, path):
    fig = getattr(fig_or_ax, "figure", fig_or_ax)
    fig.savefig(path, dpi=60)
    assert path.exists() and path.stat().st_size > 2000
    return path


def labelled(ax, label):
    found = [a for a in list(ax.lines) + list(ax.collections) if a.get_label() == label]
    assert len(found) == 1, f"one artist labelled {label!r} expected"
    return found[0]


# ------------------------------------------------------------- caterpillar
def test_caterpillar_draws_modes_and_intervals(sleep_fit, tmp_path):
    fig = lp.caterpillar(sleep_fit)
    save(fig, tmp_path / "cat.png")
    modes = sleep_fit.ranef["Subject"]
    sds = sleep_fit.ranef_cond_sd["Subject"]
    assert len(fig.axes) == modes.shape[1] == 2
    order = np.argsort(modes["(Intercept)"].to_numpy(), kind="stable")
    for k, ax in enumerate(fig.axes):
        dots = labelled(ax, "modes")
        x = np.asarray(dots.get_xdata())
        assert x.size == len(modes) == 18
        np.testing.assert_allclose(x, modes.iloc[order, k].to_numpy())
        np.testing.assert_allclose(dots.get_ydata(), np.arange(18))
        segs = labelled(ax, "intervals").get_segments()
        assert len(segs) == 18
        widths = np.array([s[1, 0] - s[0, 0] for s in segs])
        np.testing.assert_allclose(widths, 2 * 1.959963984540054 * sds.iloc[order, k].to_numpy(), rtol=1e-10)
    # rows sorted by the first column's mode, labelled with the levels
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [str(v) for v in modes.index[order]]
    assert np.all(np.diff(labelled(fig.axes[0], "modes").get_xdata()) >= 0)


def test_caterpillar_unsorted_level_and_given_axes(sleep_fit, tmp_path):
    fig, axes = plt.subplots(1, 2)
    out = lp.caterpillar(sleep_fit, level=0.5, ax=axes, sort=False)
    assert out is fig
    modes = sleep_fit.ranef["Subject"]
    sds = sleep_fit.ranef_cond_sd["Subject"]
    np.testing.assert_allclose(labelled(axes[1], "modes").get_xdata(), modes["Days"].to_numpy())
    segs = labelled(axes[1], "intervals").get_segments()
    widths = np.array([s[1, 0] - s[0, 0] for s in segs])
    np.testing.assert_allclose(widths, 2 * 0.6744897501960817 * sds["Days"].to_numpy(), rtol=1e-10)
    save(fig, tmp_path / "cat2.png")
    with pytest.raises(lmm.DataError, match="2 columns"):
        lp.caterpillar(sleep_fit, ax=axes[0])


def test_caterpillar_top_and_groups(penicillin_fit, tmp_path):
    fig = lp.caterpillar(penicillin_fit, group="plate", top=5)
    modes = penicillin_fit.ranef["plate"]["(Intercept)"]
    x = np.asarray(labelled(fig.axes[0], "modes").get_xdata())
    expected = modes.to_numpy()[np.argsort(-np.abs(modes.to_numpy()))[:5]]
    np.testing.assert_allclose(np.sort(x), np.sort(expected))
    save(fig, tmp_path / "top.png")
    with pytest.raises(lmm.DataError, match="choose one with group="):
        lp.caterpillar(penicillin_fit)
    with pytest.raises(lmm.DataError, match="no grouping factor 'Plate'"):
        lp.caterpillar(penicillin_fit, group="Plate")
    with pytest.raises(lmm.DataError, match="level"):
        lp.caterpillar(penicillin_fit, group="plate", level=95)


def test_qq_ranef(sleep_fit, tmp_path):
    fig = lp.qq_ranef(sleep_fit)
    save(fig, tmp_path / "qqr.png")
    assert len(fig.axes) == 2
    y = labelled(fig.axes[0], "modes").get_ydata()
    np.testing.assert_allclose(y, np.sort(sleep_fit.ranef["Subject"]["(Intercept)"].to_numpy()))
    with pytest.raises(lmm.DataError):
        lp.qq_ranef(sleep_fit, group="nope")


# --------------------------------------------------------------- residuals
def test_residual_plots(sleep_fit, tmp_path):
    fig, ax = plt.subplots()
    assert lp.residuals_vs_fitted(sleep_fit, ax=ax) is ax
    pts = labelled(ax, "residuals")
    np.testing.assert_allclose(pts.get_xdata(), sleep_fit.fitted().to_numpy())
    np.testing.assert_allclose(pts.get_ydata(), sleep_fit.residuals("pearson").to_numpy())
    save(ax, tmp_path / "rvf.png")
    ax2 = lp.qq_residuals(sleep_fit)
    y = labelled(ax2, "residuals").get_ydata()
    np.testing.assert_allclose(y, np.sort(sleep_fit.resid(scaled=True).to_numpy()))
    x = labelled(ax2, "residuals").get_xdata()
    assert x.size == 180 and np.all(np.diff(x) > 0) and x[0] == pytest.approx(-x[-1])
    save(ax2, tmp_path / "qq.png")


# ---------------------------------------------------------------- profiles
def test_profile_zeta_from_profile_and_fit(dyestuff_profile, tmp_path):
    fit, prof = dyestuff_profile
    fig = lp.profile_zeta(prof)
    save(fig, tmp_path / "pz.png")
    names = list(dict.fromkeys(prof["parameter"]))
    assert [ax.get_title() for ax in fig.axes] == names
    line = labelled(fig.axes[0], "zeta")
    part = prof[prof["parameter"] == names[0]].sort_values("value")
    np.testing.assert_allclose(line.get_xdata(), part["value"])
    np.testing.assert_allclose(line.get_ydata(), part["zeta"])
    fig2 = plt.figure()
    assert lp.profile_zeta(prof, params="sigma", fig=fig2, absolute=True) is fig2
    assert len(fig2.axes) == 1
    np.testing.assert_allclose(labelled(fig2.axes[0], "zeta").get_ydata() >= 0, True)
    with pytest.raises(lmm.DataError, match="no profiled parameter"):
        lp.profile_zeta(prof, params=["sd_Batch"])
    with pytest.raises(lmm.DataError, match="columns"):
        lp.profile_zeta(pd.DataFrame({"x": [1.0]}))


def test_profile_traces_and_pairs(dyestuff_profile, tmp_path):
    fit, prof = dyestuff_profile
    traces = lp.profile_traces(fit, npoints=5)
    names = list(dict.fromkeys(prof["parameter"]))
    assert list(traces.columns) == ["parameter", "value", "zeta", *names]
    # the profiled parameter's own column is the value; zeta matches the profile's points
    for name in names:
        part = traces[traces["parameter"] == name]
        np.testing.assert_allclose(part[name], part["value"])
        assert (part["zeta"] == 0).sum() == 1
        assert np.all(np.diff(part["zeta"].to_numpy()) > 0)
    fig = lp.profile_pairs(traces)
    save(fig, tmp_path / "pairs.png")
    assert len(fig.axes) == len(names) ** 2
    with pytest.raises(lmm.DataError, match="traces"):
        lp.profile_pairs(prof)


# ------------------------------------------------------------------ design
def test_sparsity_marks_stored_elements(penicillin_fit, tmp_path):
    zt = penicillin_fit.model.Zt_matrix
    ax = lp.sparsity(zt, title="Zt")
    pts = labelled(ax, "elements")
    assert len(pts.get_xdata()) == zt.nnz == 2 * 144
    assert "30 × 144" in ax.get_title()
    save(ax, tmp_path / "zt.png")
    fig, ax2 = plt.subplots()
    assert lp.sparsity(np.eye(4), ax=ax2) is ax2
    assert len(labelled(ax2, "elements").get_xdata()) == 4
    with pytest.raises(lmm.DataError, match="2-d"):
        lp.sparsity(np.ones(3))


def test_subject_lines(sleep_fit, tmp_path):
    fig = lp.subject_lines(sleep_fit, "Days", "Subject")
    save(fig, tmp_path / "subjects.png")
    assert len(fig.axes) == 18
    ax = fig.axes[0]
    level = ax.get_title()
    own = [ln for ln in ax.lines if ln.get_label() == level][0]
    rows = sleep_fit.model.data["Subject"] == level
    np.testing.assert_allclose(np.sort(own.get_ydata()), np.sort(sleep_fit.fitted()[rows].to_numpy()))
    fig2 = lp.subject_lines(sleep_fit, "Days", "Subject", levels=["308", "309"])
    assert len(fig2.axes) == 2
    with pytest.raises(lmm.DataError, match="no column"):
        lp.subject_lines(sleep_fit, "days", "Subject")


# ------------------------------------------------------------ dependencies
def test_import_lmm_does_not_import_matplotlib():
    code = "import sys, lmm, lmm.plot; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_matplotlib_is_a_clear_lmm_error(sleep_fit, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(lmm.LmmError, match=r"pip install lmm\[plot\]") as info:
        lp.residuals_vs_fitted(sleep_fit)
    assert isinstance(info.value, ImportError)
