"""``fit.summary()`` against lme4's and lmerTest's printed summaries.

The reference texts are R's own output (``tests/reference/summaries/*.txt``:
lme4's summary, then lmerTest's after the line ``---- lmerTest
(Satterthwaite) ----``). Two comparisons per reference fit:

1. **Formatting, exactly.** The summary of our model evaluated at lme4's θ
   (its default fit, optimizer name set to lme4's "nloptwrap") must equal R's
   text line for line, character for character — both lme4's and lmerTest's.
   This checks the layout and R's number formatting independently of the
   optimiser.
2. **Our own fit, cell by cell.** Lines are split into whitespace-separated
   cells and compared as printed strings. Two kinds of difference are allowed,
   and only these:

   * the optimizer's name in "optimizer (...) convergence code: 0 (OK)" (lme4
     uses nloptwrap, we BOBYQA or L-BFGS-B);
   * a number whose last digits differ because lme4's *default* fit stopped a
     little short of the optimum. Such a cell must then equal the cell printed
     at lme4's *tight* refit (bobyqa, rhoend 1e-10, ``optimum_check`` in the
     reference JSON), which shows the difference comes from lme4's default
     optimizer. At present these are, e.g., sleepstudy REML's intercept
     variance/sd (612.10/24.741 in lme4, 612.09/24.740 at the optimum),
     sleepstudy ML's and the weighted ML fit's variances and t values,
     penicillin's largest scaled residual and sample variance and its
     Satterthwaite df, and the seed example REML's variances, residual
     quantiles, intercept estimate and df.

   The seed example ML is the exception: lme4 (default and tight refit alike)
   stops at deviance 180.04 on another boundary face, while our optimum is
   179.58 (see tests/test_fit_reference.py). Its numbers differ entirely, so
   only its non-numeric cells and its line structure are compared, besides
   check 1, which covers its formatting at lme4's θ.

lmerTest's title is longer than R's 80-column console, and R breaks it before
"lmerModLmerTest]"; ``Summary.width`` (80 by default) reproduces that break,
so the text is compared with the wrap. A wider ``width`` gives one line.
"""

from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pytest
from reference_data import REFERENCE_DIR, load_reference, load_summary, reference_ids

import lmm
from lmm.optimize import OptSummary
from lmm.summary import Summary, abbreviate, r_format

LMERTEST_SEPARATOR = "---- lmerTest (Satterthwaite) ----\n"

KEYS = [k for k in reference_ids() if (REFERENCE_DIR / "summaries" / f"{k[0]}_{'REML' if k[1] else 'ML'}.txt").exists()]
PARAMS = [pytest.param(k, id=f"{k[0]}-{'REML' if k[1] else 'ML'}") for k in KEYS]

# lme4's default optimizer stops at another (worse) optimum here; see the module docstring.
DIFFERENT_OPTIMUM = {("seed_example", False)}

NUMBER = re.compile(r"^[<-]?\d|^NaN$|^-?Inf$")


def test_every_required_reference_has_a_summary():
    names = {f"{m}_{'REML' if r else 'ML'}" for m, r in KEYS}
    required = {f"{m}_{v}" for m in ("sleepstudy_slope", "penicillin", "cake") for v in ("REML", "ML")}
    required |= {"dyestuff_REML", "pastes_nested_REML", "seed_example_REML", "seed_example_ML"}
    assert required <= names


# ------------------------------------------------------------------ helpers
def _texts(key: tuple[str, bool]) -> tuple[str, str | None]:
    """lme4's text and lmerTest's (None for ML fits), as R printed them."""
    path = REFERENCE_DIR / "summaries" / f"{key[0]}_{'REML' if key[1] else 'ML'}.txt"
    parts = path.read_text().split(LMERTEST_SEPARATOR)
    assert parts[0].startswith(load_summary(*key)[:40])
    # The file adds one blank line before the separator; R's own output ends after it.
    lme4_text = parts[0][:-1] if len(parts) > 1 else parts[0]
    lmertest_text = parts[1] if len(parts) > 1 else None
    # One deliberate difference: R's pointer to its help page becomes the Python place to look.
    fix = lambda s: s.replace(R_SINGULAR, OUR_SINGULAR) if s is not None else None  # noqa: E731
    return fix(lme4_text), fix(lmertest_text)


R_SINGULAR = "boundary (singular) fit: see help('isSingular')"
OUR_SINGULAR = "boundary (singular) fit: see fit.singular_terms() and fit.diagnostics"


@functools.cache
def _model(key: tuple[str, bool]) -> lmm.LinearMixedModel:
    """The reference model, weights and offset given as columns named as in the R call (.w, .o)."""
    ref = load_reference(*key)
    data = lmm.datasets.load(ref["dataset"])
    kwargs = {}
    if ref.get("weights") is not None:
        data[".w"] = np.asarray(ref["weights"], dtype=float)
        kwargs["weights"] = ".w"
    if ref.get("offset") is not None:
        data[".o"] = np.asarray(ref["offset"], dtype=float)
        kwargs["offset"] = ".o"
    return lmm.LinearMixedModel.from_formula(ref["formula"], data, reml=key[1], **kwargs)


@functools.cache
def _fit(key: tuple[str, bool]) -> lmm.LmmResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        return _model(key).fit()


@functools.cache
def _fit_at(key: tuple[str, bool], which: str) -> lmm.LmmResult:
    """Our model evaluated (not optimised) at lme4's θ: ``"default"`` fit or ``"tight"`` refit."""
    ref = load_reference(*key)
    src = ref["theta"] if which == "default" else ref["optimum_check"]["theta"]
    theta = np.array([float(v) for v in src.values()])
    model = _model(key)
    opt = OptSummary(
        method="nloptwrap", initial=theta, final=theta, fmin=float("nan"), feval=0, converged=True, message=""
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        return model._result(theta, model._system.solve(theta), opt, key[1])


def _cells(text: str) -> list[list[str]]:
    lines = text.rstrip("\n").split("\n")
    return [re.sub(r"^optimizer \(.*\) convergence", "optimizer (*) convergence", line).split() for line in lines]


def _line_diffs(ours: str, theirs: str) -> list[str]:
    a, b = ours.rstrip("\n").split("\n"), theirs.rstrip("\n").split("\n")
    out = [f"line {i + 1}:\n  ours: {x!r}\n  R:    {y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b):
        out.append(f"{len(a)} lines against R's {len(b)}")
    return out


# ------------------------------------------- 1. formatting at lme4's θ
@pytest.mark.parametrize("key", PARAMS)
def test_text_at_lme4_theta_is_lme4s(key):
    lme4_text, lmertest_text = _texts(key)
    fit = _fit_at(key, "default")
    diffs = _line_diffs(str(fit.summary()), lme4_text)
    assert not diffs, "\n".join(diffs)
    if lmertest_text is not None:
        diffs = _line_diffs(str(fit.summary(ddf="Satterthwaite")), lmertest_text)
        assert not diffs, "\n".join(diffs)


# ------------------------------------------------ 2. our fit, cell by cell
@pytest.mark.parametrize("key", PARAMS)
@pytest.mark.parametrize("variant", ["lme4", "lmerTest"])
def test_text_of_our_fit(key, variant):
    lme4_text, lmertest_text = _texts(key)
    theirs = lme4_text if variant == "lme4" else lmertest_text
    if theirs is None:
        pytest.skip("lmerTest's summary is recorded for REML fits only")
    ddf = None if variant == "lme4" else "Satterthwaite"
    ours = _cells(str(_fit(key).summary(ddf=ddf)))
    ref = _cells(theirs)
    assert [len(r) for r in ours] == [len(r) for r in ref], "the line structure differs"
    if key in DIFFERENT_OPTIMUM:
        for ro, rr in zip(ours, ref):
            assert [c for c in ro if not NUMBER.match(c)] == [c for c in rr if not NUMBER.match(c)]
        assert _fit(key).objective < load_reference(*key)["optimum_check"]["objective"] - 0.4
        return
    tight = _cells(str(_fit_at(key, "tight").summary(ddf=ddf)))
    bad = []
    for i, (ro, rr, rt) in enumerate(zip(ours, ref, tight)):
        for j, (co, cr) in enumerate(zip(ro, rr)):
            if co != cr and not (NUMBER.match(cr) and co == rt[j]):
                bad.append(f"line {i + 1}, cell {j + 1}: ours {co!r}, R {cr!r}, at lme4's tight refit {rt[j]!r}")
    assert not bad, "\n".join(bad)


def test_lmertest_title_wrap_follows_width():
    fit = _fit(("sleepstudy_slope", True))
    s = fit.summary(ddf="Satterthwaite")
    lines = str(s).split("\n")
    assert lines[:2] == ["Linear mixed model fit by REML. t-tests use Satterthwaite's method [", "lmerModLmerTest]"]
    wide = Summary(**{**s.__dict__, "width": 200})
    assert (
        str(wide).split("\n")[0]
        == "Linear mixed model fit by REML. t-tests use Satterthwaite's method [lmerModLmerTest]"
    )
    ml = _fit(("sleepstudy_slope", False)).summary(ddf="Satterthwaite")
    assert ml.title.startswith("Linear mixed model fit by maximum likelihood . t-tests use Satterthwaite's method [")


def test_double_bar_formula_as_lme4_and_lmertest_print_it():
    s = _fit(("sleepstudy_diag", True))
    assert "Formula: Reaction ~ Days + ((1 | Subject) + (0 + Days | Subject))" in str(s.summary())
    assert "Formula: Reaction ~ Days + (Days || Subject)" in str(s.summary(ddf="Satterthwaite"))


# ------------------------------------------------------------ data
def test_summary_is_frozen_data():
    s = _fit(("sleepstudy_slope", True)).summary(ddf="Satterthwaite")
    assert list(s.coefficients.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    assert s.correlation.shape == (2, 2)
    assert list(s.scaled_residuals.index) == ["Min", "1Q", "Median", "3Q", "Max"]
    assert list(s.random_effects.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert s.criteria.index.tolist() == ["REML criterion at convergence"]
    with pytest.raises(AttributeError):
        s.reml = False  # type: ignore[misc]
    ml = _fit(("sleepstudy_slope", False)).summary()
    assert ml.criteria.index.tolist() == ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    assert list(ml.coefficients.columns) == ["Estimate", "Std. Error", "t value"]


def test_bad_ddf():
    with pytest.raises(ValueError, match="ddf"):
        _fit(("dyestuff", True)).summary(ddf="Wald")


# ------------------------------------------------------ correlation
def test_correlation_omitted_above_twelve_fixed_effects():
    fit = _fit(("cake", True))
    assert fit.nfixef == 18
    assert "Correlation of Fixed Effects" not in str(fit.summary())
    shown = str(fit.summary(correlation=True))
    assert "Correlation of Fixed Effects:" in shown
    block = shown.split("Correlation of Fixed Effects:\n")[1].split("\n")
    # row names abbreviated to 11 characters, column names to 6; columns wrap at 80
    assert block[0].split()[0] == "(Intr)"
    assert all(len(line) <= 80 for line in block)
    assert len(block) > 18  # 17 rows per column block, more than one block
    assert "Correlation of Fixed Effects" not in str(_fit(("sleepstudy_slope", True)).summary(correlation=False))


def test_abbreviate_as_r():
    # R: abbreviate(state.name[c(1, 10, 11, 18, 29, 33, 48, 21)]) and lme4's "(Intr)"
    states = [
        "Alabama",
        "Georgia",
        "Hawaii",
        "Louisiana",
        "New Hampshire",
        "North Carolina",
        "West Virginia",
        "Massachusetts",
    ]
    assert abbreviate(states, 4) == ["Albm", "Gerg", "Hawa", "Losn", "NwHm", "NrtC", "WstV", "Mssc"]
    assert abbreviate(["(Intercept)", "Days"], 6) == ["(Intr)", "Days"]


def test_r_format():
    assert r_format([612.0934, 35.0717, 654.941], 4) == ["612.09", " 35.07", "654.94"]
    assert r_format([0.0, 13.81], 4) == [" 0.00", "13.81"]
    assert r_format([2.81e-08], 3) == ["2.81e-08"]
    assert r_format([1.0, float("nan")], 7, nsmall=2) == ["1.00", " NaN"]


# ------------------------------------------------------------ HTML
def test_html_has_tables_and_escapes_names():
    data = lmm.datasets.load("sleepstudy")
    data["a<b"] = data["Days"] ** 2
    data.attrs["name"] = "<sleep & co>"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lmm.LmmWarning)
        fit = lmm.lmer("Reaction ~ Days + `a<b` + (1 | Subject)", data)
    page = fit.summary(ddf="Satterthwaite")._repr_html_()
    assert page.count("<table") >= 4
    assert "a&lt;b" in page and "a<b" not in page
    assert "&lt;sleep &amp; co&gt;" in page
    assert "Pr(&gt;|t|)" in page and "Signif. codes" in page
    assert fit._repr_html_() == fit.summary()._repr_html_()


def test_html_shows_warnings():
    page = _fit(("dyestuff2", True))._repr_html_()
    assert 'class="lmm-warning"' in page and "boundary (singular) fit" in page
    assert 'class="lmm-warning"' not in _fit(("dyestuff", True))._repr_html_()
