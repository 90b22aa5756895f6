"""The repository stands alone: reference data ships as package data of `fitting`, loads from
Python and from every CLI command that reads a table, and nothing points outside the clone."""

import csv
import fnmatch
import hashlib
import json
import re
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from fitting import reference
from fitting.allocate import chinchilla_optimal
from scalesweep.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_shipped_file_matches_its_readme():
    p = reference.path("epoch-chinchilla")
    readme = (p.parent / "README.md").read_text()
    md5 = re.search(r"md5 ([0-9a-f]{32})", readme).group(1)
    assert hashlib.md5(p.read_bytes()).hexdigest() == md5
    assert "92258837425e1b5f2851d624287f0120583a3d0e" in readme  # the source commit
    for column in ("Model Size", "Training FLOP", "loss"):
        assert f"`{column}`" in readme


def test_table_and_load():
    t = reference.table("epoch-chinchilla")
    assert {"Model Size", "Training FLOP", "loss"} <= set(t) and len(t["loss"]) == 245
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = reference.load("epoch-chinchilla", law="chinchilla")
    assert len(d) == 240 and d.n_dropped == 5  # Epoch's own preprocessing
    assert [str(w.message) for w in caught] == ["dropped 5 of 245 rows from "
                                                f"{reference.path('epoch-chinchilla')}: 5 for 5 highest-loss rows "
                                                "(--drop-top-loss)"]
    np.testing.assert_allclose(d.X["D"] * 6 * d.X["N"], np.asarray(t["Training FLOP"])[d.index])
    assert len(reference.load("epoch-chinchilla", drop_top_loss=0)) == 245
    with pytest.raises(ValueError, match=r"unknown example 'nope'; choose from \['epoch-chinchilla'\]"):
        reference.path("nope")


def test_reference_files_are_package_data():
    text = (REPO / "pyproject.toml").read_text()  # (tomllib is 3.11+; the project supports 3.10)
    section = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    patterns = re.findall(r'"([^"]+)"', re.search(r'"fitting\.reference"\s*=\s*\[([^\]]*)\]', section).group(1))
    shipped = [p.name for p in (REPO / "fitting" / "reference").iterdir() if p.suffix in (".csv", ".md")]
    assert "epoch_chinchilla.csv" in shipped
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pat) for pat in patterns), name


def _tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return [REPO / f for f in out.splitlines()]
    except (OSError, subprocess.CalledProcessError):  # an export without .git: every file but the ignored dirs
        skip = {".git", ".venv", ".cache", "demo_out", "build", "dist"}
        return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def test_nothing_points_outside_the_clone():
    kinds = lambda rel: (rel.endswith((".py", ".toml", ".yaml", ".yml", ".md", ".cfg")) or rel == "Makefile"
                         or rel.startswith((".ci/", "examples/")))
    needles = ["../" + "shared", "shared" + "/data"]  # split so this file does not match itself
    checked, offenders = 0, []
    for path in _tracked_files():
        rel = path.relative_to(REPO).as_posix()
        if not kinds(rel) or not path.is_file():
            continue
        checked += 1
        text = path.read_text(errors="replace")
        offenders += [f"{rel}: {n}" for n in needles if n in text]
    assert checked > 30 and not offenders, offenders


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fit_and_plan_example(capsys):
    rc, out, _ = run(capsys, "fit", "--example", "epoch-chinchilla", "--bootstrap", 0, "--json")
    assert rc == 0
    obj = json.loads(out)
    assert obj["n_points"] == 240 and obj["params"]["E"] == pytest.approx(1.8172, rel=0.01)
    assert any("from example epoch-chinchilla" in w and "--drop-top-loss" in w for w in obj["warnings"])
    rc, out, _ = run(capsys, "fit", "--example", "epoch-chinchilla", "--drop-top-loss", 0, "--bootstrap", 0, "--json")
    assert rc == 0 and json.loads(out)["n_points"] == 245
    rc, out, _ = run(capsys, "plan", "--example", "epoch-chinchilla", "--compute", "1e24", "--bootstrap", 0, "--json")
    assert rc == 0
    p = json.loads(out)
    assert p["identified"] is True
    assert p["N_opt"] == pytest.approx(float(chinchilla_optimal(p["fit"]["params"], 1e24)[0]), rel=1e-6)


def test_example_errors(capsys, tmp_path):
    rc, _, err = run(capsys, "fit", tmp_path / "runs.csv", "--example", "epoch-chinchilla")
    assert rc == 2 and "give RUNS or --example, not both" in err
    rc, _, err = run(capsys, "fit")
    assert rc == 2 and "needs RUNS" in err
    rc, _, err = run(capsys, "fit", "--example", "nope")
    assert rc == 2 and "invalid choice: 'nope'" in err and err.count("\n") == 1


def test_replay_example_splits_pool_and_targets(capsys, tmp_path):
    out = tmp_path / "pred.csv"
    rc, text, _ = run(capsys, "replay", "--example", "epoch-chinchilla", "--strategy", "random", "--batch", 4,
                      "--bootstrap", 0, "--out", out)
    assert rc == 0
    assert "pool = its 217 runs with C <= 1e+21 FLOPs, targets = the 23 above" in text
    assert "targets with a known loss, 23 of 23:" in text
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 23 and all(6 * float(r["N"]) * float(r["D"]) > 1e21 for r in rows)
