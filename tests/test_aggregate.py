"""Hyperparameter axes aggregated, not mixed in (issue 13 item 6): rows → cells, best over lr,
mean over seed, the warning without it, and the optimal-hyperparameter power law. All pure."""

import json
import math
import warnings

import numpy as np
import pytest

from fitting.aggregate import Aggregation, aggregate_rows, default_aggregation, swept_in_cells
from fitting.data import DataWarning, load_fit_data
from fitting.fit import fit_law
from fitting.hyperparams import fit_optimal_hyperparameter
from fitting.laws import chinchilla
from fitting.run_result import REFERENCE_LOG_SD
from scalesweep.cli import main

TRUTH = {"E": 1.8, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28}
LRS = np.array([3e-4, 1e-3, 3e-3, 1e-2, 3e-2])


def lr_sweep(n_cells=20, seed=0, k=-0.3):
    """5 learning rates per (N, D); the loss grows with the squared log distance from the
    cell's optimum lr_opt = 0.5·N^k, so each cell's best lr follows a known power law."""
    rng = np.random.default_rng(seed)
    N = np.exp(rng.uniform(np.log(1e7), np.log(3e9), n_cells))
    D = N * np.exp(rng.uniform(np.log(2), np.log(200), n_cells))
    y = chinchilla.predict(TRUTH, {"N": N, "D": D}) * np.exp(0.005 * rng.standard_normal(n_cells))
    lr_opt = 0.5 * N ** k
    penalty = 1 + 0.02 * np.log(LRS[None, :] / lr_opt[:, None]) ** 2
    return {"N": np.repeat(N, 5), "D": np.repeat(D, 5), "lr": np.tile(LRS, n_cells),
            "loss": (y[:, None] * penalty).ravel()}


def write_csv(path, cols):
    with open(path, "w") as fh:
        fh.write(",".join(cols) + "\n")
        for row in zip(*cols.values()):
            fh.write(",".join(repr(float(v)) for v in row) + "\n")
    return str(path)


def test_best_over_lr_gives_the_fit_of_the_hand_aggregated_table(tmp_path, capsys):
    cols = lr_sweep()
    loss = cols["loss"].reshape(-1, 5)
    best = loss.argmin(axis=1)
    hand = {"N": cols["N"][::5], "D": cols["D"][::5], "loss": loss[np.arange(len(loss)), best]}
    rc = main(["fit", write_csv(tmp_path / "lr.csv", cols), "--best-over", "lr", "--bootstrap", "0", "--json"])
    agg = json.loads(capsys.readouterr().out)
    rc2 = main(["fit", write_csv(tmp_path / "hand.csv", hand), "--bootstrap", "0", "--json"])
    ref = json.loads(capsys.readouterr().out)
    assert rc == rc2 == 0
    assert agg["n_points"] == ref["n_points"] == 20
    assert agg["aggregation"] == "100 rows → 20 cells, best over lr"
    for k, v in ref["params"].items():
        assert agg["params"][k] == pytest.approx(v, rel=1e-9, abs=1e-12)
    assert not any("repeat the (N, D)" in w for w in agg["warnings"])
    # the same through load_fit_data: each cell's best lr is the one the table's argmin says
    data = load_fit_data(cols, law=chinchilla, aggregate=Aggregation(("lr",)))
    np.testing.assert_array_equal(data.best["lr"], LRS[best])
    np.testing.assert_array_equal(data.index, np.arange(20) * 5 + best)


def test_without_aggregation_the_warning_names_the_flags_and_the_swept_column(tmp_path, capsys):
    cols = lr_sweep()
    with pytest.warns(DataWarning) as caught:
        data = load_fit_data(cols, law=chinchilla)
    assert len(data) == 100 and data.aggregation is None
    (msg,) = [str(w.message) for w in caught if "repeat" in str(w.message)]
    assert "80 of 100 rows repeat the (N, D) of another row (20 distinct (N, D))" in msg
    assert "lr vary within a (N, D)" in msg
    assert "--best-over COL" in msg and "--mean-over COL" in msg and "--best-per-config" in msg
    # and on the CLI it is among the fit's warnings
    assert main(["fit", write_csv(tmp_path / "lr.csv", cols), "--bootstrap", "0", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["n_points"] == 100 and any("--best-over COL" in w for w in obj["warnings"])


def test_mean_over_seed_reduces_rows_and_widens_sigma():
    rng = np.random.default_rng(1)
    N = np.repeat(np.geomspace(1e7, 1e9, 6), 6)
    D = 20 * N
    lr = np.tile(np.repeat([1e-3, 3e-3], 3), 6)
    seed = np.tile([0, 1, 2], 12)
    base = chinchilla.predict(TRUTH, {"N": N, "D": D}) * np.where(lr == 1e-3, 1.0, 1.05)
    loss = base * np.exp(0.02 * rng.standard_normal(N.size))  # seed scatter 2 %, twice the reference
    cells = aggregate_rows({"N": N, "D": D}, loss, {"lr": lr, "seed": seed}, Aggregation(("lr",), ("seed",)))
    assert len(cells) == 6 and cells.message == "36 rows → 6 cells, best over lr, mean over seed"
    assert not cells.notes
    for i in range(6):  # the lower mean of the two lr settings, its seeds averaged
        rows = slice(6 * i, 6 * i + 6)
        means = [loss[rows][lr[rows] == v].mean() for v in (1e-3, 3e-3)]
        assert cells.y[i] == pytest.approx(min(means), rel=1e-12)
        s = np.std(np.log(loss[rows][lr[rows] == cells.best["lr"][i]]), ddof=1)
        assert cells.sigma[i] == pytest.approx(np.sqrt(REFERENCE_LOG_SD ** 2 + s ** 2 / 3), rel=1e-12)
    assert (cells.sigma > REFERENCE_LOG_SD).all() and (cells.weights < 1).all()
    # through load_fit_data: the cells' weights reach the fit
    data = load_fit_data({"N": N, "D": D, "loss": loss, "lr": lr, "seed": seed}, law=chinchilla,
                         aggregate=Aggregation(["lr"], ["seed"]))
    np.testing.assert_allclose(data.weights, cells.weights)
    # a single run per cell keeps the reference noise: weight 1, no weights at all
    one = aggregate_rows({"N": N[::6], "D": D[::6]}, loss[::6], {"seed": seed[::6]}, Aggregation((), ("seed",)))
    assert one.weights is None and np.allclose(one.sigma, REFERENCE_LOG_SD)


def test_unnamed_repeats_are_averaged_and_said():
    N = np.repeat([1e7, 1e8, 1e9], 4)
    lr = np.tile([1e-3, 1e-3, 3e-3, 3e-3], 3)  # two seeds per lr, seed column not named
    loss = np.linspace(3.0, 2.5, 12)
    cells = aggregate_rows({"N": N, "D": 20 * N}, loss, {"lr": lr}, Aggregation(("lr",)))
    assert len(cells) == 3 and "6 of 12 rows repeat the (N, D) and lr of another row" in cells.notes[0]
    assert "--mean-over COL" in cells.notes[0]


def test_best_per_config_is_the_every_row_shorthand(tmp_path, capsys):
    cols = lr_sweep()
    path = write_csv(tmp_path / "lr.csv", cols)
    assert main(["fit", path, "--best-per-config", "--bootstrap", "0", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert main(["fit", path, "--best-over", "lr", "--bootstrap", "0", "--json"]) == 0
    named = json.loads(capsys.readouterr().out)
    assert short["aggregation"] == "100 rows → 20 cells, best row of each (N, D)"
    assert short["params"] == pytest.approx(named["params"], rel=1e-12)
    assert main(["fit", path, "--best-per-config", "--best-over", "lr"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--best-over", "lrr"], "--best-over lrr: no column 'lrr' in"),
    (["--best-over", "lr", "--mean-over", "lr"], "column 'lr' is in both --best-over and --mean-over"),
    (["--best-over", "lr", "--best-over", "lr"], "--best-over: column 'lr' is named twice"),
    (["--mean-over", "N"], "--mean-over N: column 'N' is the law's N column"),
])
def test_bad_aggregation_flags_exit_2_naming_the_column(tmp_path, capsys, argv, message):
    path = write_csv(tmp_path / "lr.csv", lr_sweep())
    assert main(["fit", path, *argv, "--bootstrap", "0"]) == 2
    assert message in capsys.readouterr().err


def test_optimal_lr_power_law_recovers_its_exponent(tmp_path, capsys):
    # continuous best values: lr_opt = 0.5·N^-0.3 with 3 % scatter
    rng = np.random.default_rng(2)
    N = np.geomspace(1e6, 1e9, 12)
    law = fit_optimal_hyperparameter(N, 0.5 * N ** -0.3 * np.exp(0.03 * rng.standard_normal(12)), column="lr")
    assert law.k_interval[0] < -0.3 < law.k_interval[1] and law.k == pytest.approx(-0.3, abs=0.02)
    assert law.c_interval[0] < 0.5 < law.c_interval[1]
    assert law.text().startswith("lr_opt ∝ N^-0.") and "(12 cells, 12 distinct N)" in law.text()
    few = fit_optimal_hyperparameter([1e6, 1e6, 1e7], [1e-3, 2e-3, 1e-3], column="lr")
    assert not few.fitted and "only 2 distinct N among 3 cells" in few.text()
    # one best value everywhere (a new user's report --best-over n_layer): printed "n_layer_opt ∝ C^-4.97e-17
    # [90 %: -8.21e-17, -1.74e-17]", an interval excluding 0 made of rounding noise; now no trend is claimed
    flat = fit_optimal_hyperparameter(np.geomspace(1e6, 1e9, 12), np.full(12, 4.0), column="n_layer", against="C")
    assert not flat.fitted and math.isnan(flat.k)
    assert flat.text() == "n_layer_opt vs C: not fitted (the best n_layer is 4 in every one of the 12 cells: no trend to fit)"
    # through `fit --best-over lr`: the grid's best lr per cell follows N^-0.3 (to the grid's step)
    cols = lr_sweep(n_cells=40, k=-0.3)
    assert main(["fit", write_csv(tmp_path / "lr.csv", cols), "--best-over", "lr", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("lr_opt ∝ N^")]
    k = float(line.split("^")[1].split()[0])
    lo, hi = (float(v) for v in line.split("[90 %: ")[1].split("]")[0].split(", "))
    assert lo < -0.3 < hi and k == pytest.approx(-0.3, abs=0.1), line
    assert "rows: 200 rows → 40 cells, best over lr" in out


def test_default_aggregation_follows_what_is_swept():
    assert default_aggregation({"lr": [1e-3, 3e-3], "batch_tokens": [8192], "seed": [0, 1]}) == \
        Aggregation(("lr",), ("seed",))
    assert not default_aggregation({"lr": [None], "batch_tokens": [8192], "seed": [0]})
    # a column that changes only with N (Kaplan's lr rule) is not swept within a cell
    N = np.repeat([1e7, 1e8], 2)
    swept = swept_in_cells({"N": N, "D": 20 * N}, {"lr": 0.003 * (N / 1e7) ** -0.3, "seed": [0, 1, 0, 1]})
    assert list(swept) == ["seed"]


def test_aggregation_rejects_a_column_in_both_lists():
    with pytest.raises(ValueError, match="column 'seed' is in both best_over and mean_over"):
        Aggregation(("seed",), ("seed",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an aggregated table warns about nothing
        data = load_fit_data(lr_sweep(), law=chinchilla, aggregate=Aggregation(("lr",)))
    fit = fit_law(chinchilla, data)
    assert fit.n_points == 20 and "rows: 100 rows → 20 cells, best over lr" in fit.summary()
