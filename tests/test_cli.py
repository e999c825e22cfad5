"""The command line: ``python -m lmm fit ...``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import lmm
from lmm.__main__ import main


def test_cli_text_summary(capsys):
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out
    assert "Number of obs: 180" in out


def test_cli_json_from_csv(tmp_path, capsys):
    path = tmp_path / "sleep.csv"
    lmm.datasets.load("sleepstudy").to_csv(path, index=False)
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(path), "--ml", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reml"] is False
    assert out["objective"] == pytest.approx(1751.9393444890, abs=1e-4)
    assert out["fixef"]["Days"] == pytest.approx(10.4672859596, rel=1e-6)
    assert out["varcorr"][-1]["grp"] == "Residual"


def test_cli_error_is_one_line(capsys):
    assert main(["fit", "Reaction ~ Dayz + (1 | Subject)", "--data", "sleepstudy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmm: error:") and "Days" in err


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "lmm", "fit", "Yield ~ 1 + (1 | Batch)", "--data", "dyestuff"], capture_output=True, text=True, check=True
    )
    assert "Batch" in proc.stdout
