"""The scaling ladder's pure parts (orchestrator/ladder.py), no Ray: its plan from a synthetic
store written by the real writer (runs from a known Chinchilla surface), the trained shape, the
budget refusal and the other bad inputs, and the ladder/ table round trip."""

import math
import os
import shutil

import pytest
import yaml

from fitting.allocate import chinchilla_optimal
from metrics import TrialWriter, load_ladder, write_ladder_row
from orchestrator.grid import expand_grid
from orchestrator.ladder import check_ladder_budget, plan_ladder
from orchestrator.spec import load_spec, validate_spec
from scalesweep.cli import main
from trainers.fields import SpecError
from trainers.shapes import non_embedding_params, shape_for_params, train_flops

TRUE = {"E": 1.8, "A": 400.0, "alpha": 0.34, "B": 2000.0, "beta": 0.36}  # the surface the runs follow


def chinchilla(n, d, p=TRUE):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def spec_dict(storage, budget=1e18, **extra):
    return {"name": "synth", "storage": str(storage),
            "axes": {"target_params": [1e5, 2e5, 4e5, 8e5], "n_ctx": 128,
                     "dataset_tokens": [1_000_000, 3_000_000, 10_000_000], "batch_tokens": 8192},
            "budget": {"flops": budget}, **extra}


def write_store(spec, loss=chinchilla, skip=()):
    """One completed runs row per grid trial, as a trial writes it, with loss(N, tokens seen)."""
    spent = 0.0
    for trial in expand_grid(spec).trials:
        if trial.trial_key in skip:
            continue
        seqs = trial.batch_tokens // trial.shape.n_ctx
        steps = trial.dataset_tokens // (trial.shape.n_ctx + 1) // seqs
        tokens = steps * trial.batch_tokens
        n = non_embedding_params(trial.shape)
        flops = float(train_flops(trial.shape, tokens))
        s = trial.shape
        TrialWriter(spec.storage, spec.name, trial.trial_key).write_run({
            "status": "completed", "n_layer": s.n_layer, "d_model": s.d_model, "n_heads": s.n_heads,
            "d_ff": s.d_ff, "n_ctx": s.n_ctx, "vocab_size": s.vocab_size, "non_embedding_params": n,
            "dataset_tokens": trial.dataset_tokens, "regime": "tokens", "batch_tokens": trial.batch_tokens,
            "lr": trial.lr, "seed": 0, "tokens_seen": tokens, "steps": steps, "flops": flops, "wall_s": 1.0,
            "best_val_loss": loss(n, tokens), "final_val_loss": loss(n, tokens)})
        spent += flops
    return spent


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    spec = load_spec(spec_dict(tmp_path_factory.mktemp("store")))
    spent = write_store(spec)
    return spec, spent, plan_ladder(spec, 4)


def test_plan_predicts_the_true_optimum_at_k_times_the_largest_run(synth):
    spec, _, plan = synth
    runs = expand_grid(spec).trials
    assert plan.n_runs == len(runs) == 12 and plan.law == "chinchilla"
    largest = max(train_flops(t.shape, t.dataset_tokens // 129 // 64 * 8192) for t in runs)
    assert plan.reference_compute == pytest.approx(largest) and plan.compute == pytest.approx(4 * largest)
    n_true, d_true, _, _ = chinchilla_optimal(TRUE, 4 * largest)
    assert plan.allocation.N_opt == pytest.approx(float(n_true), rel=0.02)
    assert plan.allocation.D_opt == pytest.approx(float(d_true), rel=0.02)
    assert 6 * plan.allocation.N_opt * plan.allocation.D_opt == pytest.approx(plan.compute)


def test_the_trained_shape_follows_the_spec_rules_and_spends_k_times_c(synth):
    spec, _, plan = synth
    trial = plan.trial
    assert trial.trial_key == "ladder-x4" and trial.regime == "tokens" and trial.batch_tokens == 8192
    assert trial.run_columns == {"sub_sweep": "ladder"}  # so fits of the main grid leave it out
    assert trial.shape == shape_for_params(plan.allocation.N_opt, aspect_ratio=64.0, d_ff_ratio=4.0, head_dim=64,
                                           n_ctx=128, vocab_size=spec.vocab_size)
    # D from the shape's exact FLOPs per token, in whole batches: within half a batch of K x C
    per_batch = train_flops(trial.shape, 8192)
    assert abs(train_flops(trial.shape, plan.d_actual) - plan.compute) <= per_batch / 2
    assert plan.d_actual % 8192 == 0 and trial.dataset_tokens // 129 // 64 * 8192 == plan.d_actual
    assert trial.planned_flops == train_flops(trial.shape, plan.d_actual)  # the tokens it trains: whole batches
    # re-predicted at the trained (N, D), which rounding moved off the optimum
    loss, lo, hi = plan.predicted
    assert loss == pytest.approx(chinchilla(plan.n_actual, plan.d_actual), rel=1e-3)
    assert lo < loss < hi and plan.allocation.loss_misfit_interval[0] < plan.allocation.loss
    assert any("prediction interval" in line for line in plan.lines())


def test_ladder_runs_are_left_out_of_the_fit(synth, tmp_path):
    """A stored ladder run (any loss) changes neither the fit nor the reference compute, and one
    that ended is not trained (nor charged to the budget) again."""
    spec, _, before = synth
    shutil.copytree(spec.storage, tmp_path / "store")
    spec = load_spec(spec_dict(tmp_path / "store", budget=1.0))  # nothing left: only a stored run passes
    big = before.trial
    TrialWriter(spec.storage, spec.name, "ladder-x4").write_run({
        "status": "completed", **{k: getattr(big.shape, k) for k in ("n_layer", "d_model", "n_heads", "d_ff", "n_ctx",
                                                                     "vocab_size")},
        "non_embedding_params": before.n_actual, "dataset_tokens": big.dataset_tokens, "regime": "tokens",
        "batch_tokens": 8192, "lr": big.lr, "seed": 0, "tokens_seen": before.d_actual, "steps": 1,
        "flops": float(big.planned_flops), "wall_s": 1.0, "best_val_loss": 99.0, "final_val_loss": 99.0})
    after = plan_ladder(spec, 4)
    assert after.n_runs == before.n_runs and after.reference_compute == before.reference_compute
    assert after.predicted == pytest.approx(before.predicted)
    assert check_ladder_budget(spec, after.trial) is False  # already trained: scored, not re-run


def test_budget_that_cannot_pay_is_refused_before_ray(synth, tmp_path, capsys):
    spec, spent, plan = synth
    planned = plan.trial.planned_flops
    assert check_ladder_budget(load_spec(spec_dict(spec.storage, budget=spent + planned)), plan.trial) is True
    short = spec_dict(spec.storage, budget=spent + 0.99 * planned)
    with pytest.raises(ValueError, match=r"^budget: the ladder run ladder-x4 plans"):
        check_ladder_budget(load_spec(short), plan.trial)
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(short))
    assert main(["ladder", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "budget" in err[0]
    sweep_dir = os.path.join(spec.storage, spec.name)
    assert sorted(os.listdir(sweep_dir)) == ["runs"]  # no ladder/, no tune/, no Ray record


def test_bad_input_names_the_thing(tmp_path, capsys):
    storage = tmp_path / "store"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec_dict(storage)))
    for argv, needle in ((["--multiplier", "1"], "--multiplier"), (["--multiplier", "0.5"], "--multiplier"),
                         (["--multiplier", "nan"], "--multiplier"), (["--level", "1.5"], "--level"),
                         ([], "sweep")):  # the sweep never ran
        assert main(["ladder", str(path), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not storage.exists()
    with pytest.raises(ValueError, match="ladder.multiplier"):
        load_spec(spec_dict(storage, ladder={"multiplier": 1}))
    spec = load_spec(spec_dict(storage))
    big = [t.trial_key for t in expand_grid(spec).trials][5:]
    write_store(spec, skip=big)  # 5 runs: chinchilla's 5 parameters need 6
    with pytest.raises(ValueError, match="5 usable runs; fitting chinchilla .5 parameters. needs at least 6"):
        plan_ladder(spec, 4)


def test_a_fit_with_parameters_at_bounds_is_refused_unless_allowed(tmp_path):
    """Losses with no irreducible term push E to its bound (no effect on any run): the ladder
    refuses to spend K x C scoring a prediction whose interval is unreliable, unless told to."""
    spec = load_spec(spec_dict(tmp_path / "store"))
    write_store(spec, loss=lambda n, d: chinchilla(n, d, {**TRUE, "E": 0.0}))
    with pytest.raises(ValueError, match=r"^ladder: parameters at a bound: E = .*allow_at_bounds"):
        plan_ladder(spec, 4)
    plan = plan_ladder(spec, 4, allow_at_bounds=True)
    assert any(note.startswith("TRAINED ANYWAY") for note in plan.notes)


def test_ladder_table_round_trip(synth, tmp_path):
    spec, _, plan = synth
    loss, lo, hi = plan.predicted
    run = {"status": "completed", "flops": 1.5e12, "final_val_loss": loss * 1.01, "best_val_loss": hi * 1.5}
    row = plan.row(run)
    assert row["observed_loss"] == hi * 1.5 and row["covered"] is False and row["loss_column"] == "best_val_loss"
    storage = str(tmp_path)
    write_ladder_row(storage, "synth", row)
    write_ladder_row(storage, "synth", plan.row({**run, "best_val_loss": loss}))  # a rerun replaces its row
    table = load_ladder(storage, "synth").to_pylist()
    assert len(table) == 1
    back = table[0]
    assert back["covered"] is True and back["observed_loss"] == loss and back["sweep"] == "synth"
    for key in ("trial_id", "multiplier", "compute", "reference_compute", "law", "n_runs", "n_opt", "d_opt",
                "n_actual", "d_actual", "predicted_loss", "predicted_lo", "predicted_hi", "predicted_level",
                "status", "flops", "final_val_loss"):
        assert back[key] == pytest.approx(row[key]) if isinstance(row[key], float) else back[key] == row[key], key
    failed = plan.row({"status": "diverged", "flops": 1e9, "final_val_loss": math.nan})
    assert failed["observed_loss"] is None and failed["covered"] is None
    assert load_ladder(str(tmp_path), "nothing").num_rows == 0
    (tmp_path / "synth" / "ladder" / "ladder-x9.parquet").write_bytes(b"not parquet")  # skipped, named, not fatal
    skipped = []
    with pytest.warns(UserWarning, match="ladder-x9.parquet"):
        assert load_ladder(storage, "synth", skipped=skipped).num_rows == 1
    assert [p.path.endswith("ladder-x9.parquet") for p in skipped] == [True]
    with pytest.raises(ValueError, match="unknown columns"):
        write_ladder_row(storage, "synth", {**row, "bogus": 1})


def test_a_ladder_section_the_budget_cannot_pay_is_refused_before_the_sweep(tmp_path):
    """The grid plus its ladder (estimated at K x the largest planned run) must fit the budget, or
    the ladder would be refused only after the whole sweep ran."""
    storage = tmp_path / "store"
    trials = expand_grid(load_spec(spec_dict(storage))).trials
    need = sum(t.planned_flops for t in trials) + 4 * max(t.planned_flops for t in trials)
    with pytest.raises(SpecError, match=r"^budget: the grid plans .* its ladder \(ladder.multiplier 4\)"):
        validate_spec(spec_dict(storage, budget=0.99 * need, ladder={"multiplier": 4}), check_corpus=False)
    lines = []
    validate_spec(spec_dict(storage, budget=need, ladder={}), check_corpus=False, report=lines)
    assert lines == [f"ladder: after the sweep, one run at 4 x the largest fitted run's compute, about "
                     f"{4 * max(t.planned_flops for t in trials):.3g} FLOPs"]
    assert not storage.exists()


def test_max_steps_set_for_a_dataset_regime_sub_sweep_does_not_cut_the_ladder_run(synth, tmp_path):
    """trainer.max_steps caps a sweep's dataset-regime runs; the tokens-regime ladder run trains its whole
    schedule (noted). Without a dataset regime a max_steps that would cut it stays an error naming it."""
    spec, _, before = synth
    steps = before.d_actual // 8192
    shutil.copytree(spec.storage, tmp_path / "store")
    raw = spec_dict(tmp_path / "store", trainer={"max_steps": steps // 2},
                    sub_sweeps={"overfit": {"regime": "dataset", "dataset_tokens": 1_000_000}})
    plan = plan_ladder(load_spec(raw), 4)
    assert plan.trial.planned_tokens == before.trial.planned_tokens and "max_steps" not in plan.trial.trainer
    assert any("trains all its" in n for n in plan.notes)
    del raw["sub_sweeps"]
    with pytest.raises(ValueError, match=r"^trainer\.max_steps: .* would cut the ladder run"):
        plan_ladder(load_spec(raw), 4)


def test_a_ladder_d_beyond_the_corpus_says_so_before_ray(synth):
    """The builtin corpus holds ~12M tokens; the synthetic sweep's optimum at 4x wants more."""
    from orchestrator.ladder import run_ladder

    spec, _, plan = synth
    assert plan.trial.dataset_tokens > 12_100_000
    with pytest.raises(SpecError, match=r"^ladder: the compute-optimal D at 4x \(.* tokens\) does not fit the corpus "
                                        r"\(.*\); lower ladder.multiplier"):
        run_ladder(spec, multiplier=4)


def test_the_plan_says_why_the_trained_run_is_not_the_optimum_and_what_is_held_out(synth):
    """The trained (N, D) differs from the optimum's (a whole shape; D from its exact FLOPs per
    token in whole steps): the plan says so with the numbers, and names the held-out run; the
    verdict gives the relative error of the prediction."""
    from orchestrator.ladder import result_line

    _, _, plan = synth
    text = "\n".join(plan.lines())
    steps = plan.d_actual // plan.trial.batch_tokens
    per_token = train_flops(plan.trial.shape, 1)
    assert f"{steps} whole steps of {plan.trial.batch_tokens} tokens" in text and f"{per_token:.4g} FLOPs per token" in text
    assert f"6N = {6 * plan.n_actual:.4g}" in text and "held out            the ladder run itself" in text
    loss = plan.predicted[0]
    line = result_line(plan.row({"status": "completed", "flops": 1.0, "final_val_loss": loss, "best_val_loss": loss * 1.05}))
    assert "relative error +5.00% (observed / predicted - 1)" in line and "held out: the ladder run itself" in line
    assert not any(note.startswith("trained although") for note in plan.notes)  # every parameter identified here


def test_the_ladder_rule_trains_wide_parameters_and_refuses_an_unidentified_loss_at_the_rung():
    """Parameters merely not identified one by one are named and trained (their spread is in the
    scored interval); a loss at the ladder run without a finite interval is refused."""
    from fitting.checks import ParamVerdict
    from orchestrator.ladder import identified_rung

    verdicts = {"E": ParamVerdict("E", 1.8, 1.7, 1.9, True),
                "A": ParamVerdict("A", 400.0, 2.0, 5e7, False, "spans more than 2 decades", "interval"),
                "alpha": ParamVerdict("alpha", 0.3, 0.1, 1.8, False, "wider than 2x", "interval"),
                "beta": ParamVerdict("beta", 0.3, 0.2, 0.4, False, "null direction", "null", True)}
    notes = identified_rung(verdicts, (2.18, 1.74, 2.41), "the runs", "chinchilla")
    assert len(notes) == 1 and notes[0].startswith("trained although A, alpha, beta are not identified one by one")
    assert identified_rung({"E": verdicts["E"]}, (2.18, 1.74, 2.41), "the runs", "chinchilla") == []
    for bad in ((2.18, math.nan, 2.41), (2.18, 1.74, math.inf), (2.18, 0.0, 2.41)):
        with pytest.raises(ValueError, match=r"^ladder: the runs do not identify chinchilla's loss at the ladder run"):
            identified_rung(verdicts, bad, "the runs", "chinchilla")
