"""Bad command-line input is one line naming the flag (exit 2), and the user's columns are the
ones used: numeric flags (scalesweep.argtypes), a table's own C column, kaplan_d from compute,
header-only tables, --params typos, input warnings before the table, far-off prediction targets,
and every command README/docs quote parses as written."""

import argparse
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

from fitting.data import DataWarning, load_fit_data
from scalesweep import argtypes
from scalesweep.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
TRUTH = dict(E=1.8, A=400.0, alpha=0.34, B=2000.0, beta=0.37)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])  # a bad flag too returns 2 (not argparse's SystemExit)
    out, err = capsys.readouterr()
    return rc, out, err


def table(path, N, D, extra=None, loss=True):
    """A CSV of runs from the Chinchilla law at TRUTH (no noise; a small wobble so fits converge)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    cols = {"N": N, "D": D, **(extra or {})}
    if loss:
        y = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
        cols["loss"] = y * np.exp(0.004 * np.sin(np.arange(N.size)))
    path.write_text(",".join(cols) + "\n" + "".join(",".join(f"{float(v):.9g}" for v in row) + "\n"
                                                    for row in zip(*cols.values())))
    return path


def grid_nd():
    N = np.repeat([1e7, 3e7, 1e8, 3e8, 1e9], 3)
    return N, N * np.tile([5.0, 20.0, 80.0], 5)


@pytest.fixture(scope="module")
def parser():
    return build_parser()  # imports every command's module: once


def _numeric_actions(parser):
    """(command, option, action) for every option of every sub-command that takes a value."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.option_strings and action.nargs != 0:
                yield name, action.option_strings[0], action


def test_no_numeric_flag_uses_a_bare_float_or_int(parser):
    """The kind: every numeric flag of every sub-command takes its type from scalesweep.argtypes
    (finite, ranged, one-line errors), none a bare float/int that lets -1, inf and nan through."""
    bare = [(c, o) for c, o, a in _numeric_actions(parser) if a.type in (float, int)]
    assert not bare, bare


def test_every_typed_flag_refuses_text_and_infinity_in_one_line(parser, capsys):
    typed = [(c, o) for c, o, a in _numeric_actions(parser)
             if getattr(a.type, "__module__", "") == argtypes.__name__]
    assert len(typed) >= 20, typed  # fit, plan, predict, frontier, replay, ladder, run, report, ...
    for command, option in typed:
        for bad in ("abc", "inf"):
            with pytest.raises(SystemExit) as exit_:
                parser.parse_args([command, option, bad])
            assert exit_.value.code == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and option in err[0] and "usage" not in err[0], (command, option, err)


@pytest.mark.parametrize("value", ["-1e22", "abc", "inf", "0"])
def test_plan_compute_bad_number_is_one_line(capsys, value):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # --compute=inf once leaked numpy's RuntimeWarning
        rc, out, err = run(capsys, "plan", "--example", "epoch-chinchilla", f"--compute={value}"
                           if value == "inf" else "--compute", *([] if value == "inf" else [value]))
    assert rc == 2 and not out
    assert err.count("\n") == 1 and "argument --compute" in err and value in err, err


def test_argtypes_ranges():
    assert argtypes.positive("1e22") == 1e22 and argtypes.count("0") == 0 and argtypes.fraction("0.9") == 0.9
    for parse, bad in ((argtypes.positive, "0"), (argtypes.count, "-1"), (argtypes.count, "1.5"),
                       (argtypes.fraction, "1"), (argtypes.positive_count, "0"), (argtypes.non_negative, "nan")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


# ---------------------------------------------------------------- the table's own C column
def test_the_tables_c_column_is_what_selections_read(tmp_path, capsys):
    N, D = grid_nd()
    path = table(tmp_path / "both.csv", N, D, {"C": 10 * 6 * N * D})  # the user's C: 10x 6ND
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_fit_data(path)
    np.testing.assert_allclose(data.compute(), 10 * 6 * N * D)
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning) and "'C'" in str(w.message)]
    assert len(said) == 1 and "6·N·D" in said[0] and "15 of 15" in said[0], said
    cut = 1e19
    rc, out, err = run(capsys, "predict", path, "--law", "kaplan_n", "--train", f"C <= {cut:g}", "--bootstrap", 0)
    assert rc == 0, err
    assert f"fit on {int((10 * 6 * N * D <= cut).sum())} of 15 runs" in out, out
    assert out.count("differs from 6·N·D") == 1
    assert int((6 * N * D <= cut).sum()) != int((10 * 6 * N * D <= cut).sum())  # the test can tell them apart


def test_a_c_column_equal_to_6nd_says_nothing(tmp_path):
    N, D = grid_nd()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = load_fit_data(table(tmp_path / "same.csv", N, D, {"flops": 6 * N * D * 1.001}))
    assert data.C is not None and data.subset(np.arange(15) < 3).C.shape == (3,)


def test_kaplan_d_derives_d_from_compute_and_n(tmp_path, capsys):
    N, D = grid_nd()
    path = table(tmp_path / "c.csv", N, D, {"Training FLOP": 6 * N * D})
    text = path.read_text().replace("N,D,", "Model Size,tokens_gone,")  # no D column a name finds
    path.write_text(text)
    data = load_fit_data(path, law="kaplan_d", c_col="Training FLOP")
    np.testing.assert_allclose(np.sort(data.X["D"]), np.sort(D), rtol=1e-6)
    no_n = tmp_path / "no_n.csv"
    no_n.write_text(text.replace("Model Size", "width"))
    rc, _, err = run(capsys, "fit", no_n, "--law", "kaplan_d", "--c-col", "Training FLOP", "--bootstrap", 0)
    assert rc == 2 and err.count("\n") == 1 and "--n-col" in err, err


# ---------------------------------------------------------------- smaller input faults
def test_header_only_table_says_so(tmp_path, capsys):
    (tmp_path / "h.csv").write_text("N,D,loss\n")
    rc, _, err = run(capsys, "fit", tmp_path / "h.csv")
    assert rc == 2 and "no rows" in err and "dropped 0" not in err and "{}" not in err, err


def test_params_typo_is_named_and_plan_from_params_claims_no_intervals(capsys):
    typo = '{"E": 1.8, "A": 400, "alpah": 0.34, "B": 2000, "beta": 0.37}'
    rc, _, err = run(capsys, "plan", "--params", typo, "--compute", "1e22")
    assert rc == 2 and "'alpah'" in err and "'alpha'" in err, err
    rc, out, _ = run(capsys, "plan", "--params", typo.replace("alpah", "alpha"), "--compute", "1e22")
    assert rc == 0 and "from none" not in out and "no intervals" in out, out


def test_fit_prints_input_warnings_before_the_table(tmp_path, capsys):
    N, D = grid_nd()
    path = table(tmp_path / "m.csv", N / 1e6, D)  # N in millions
    rc, out, err = run(capsys, "fit", path, "--law", "kaplan_n", "--bootstrap", 0)
    assert rc == 0, err
    lines = out.splitlines()
    unit = next(i for i, line in enumerate(lines) if "below 1e3" in line)
    assert unit < next(i for i, line in enumerate(lines) if line.startswith("param")), out


def test_predict_warns_about_targets_far_outside_the_runs(tmp_path, capsys):
    N, D = grid_nd()
    runs = table(tmp_path / "r.csv", N, D)
    far = table(tmp_path / "t.csv", [1e4, 2e8], [2e11, 4e9], loss=False)
    rc, out, err = run(capsys, "predict", runs, "--law", "kaplan_n", "--train", "N <= 3e8", "--targets", far,
                       "--bootstrap", 0)
    assert rc == 0, err
    note = [line for line in out.splitlines() if "far outside the fitted runs" in line]
    assert len(note) == 1 and "N in 1 of 2 targets (1e+04)" in note[0], out


# ---------------------------------------------------------------- commands quoted in docs
def _quoted_commands():
    """Every `scalesweep SUBCOMMAND ...` README.md and docs/*.md quote, in code blocks or inline."""
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        rest = re.sub(r"```.*?```", "", text, flags=re.S)
        spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", rest)]
        lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()] + spans
        for line in lines:
            m = re.match(r"\s*(?:\S*/)?scalesweep ([a-z]+\b.*)", line)
            if m:
                found.append((doc.name, m.group(1).split(" #")[0].strip()))
    return found


# what the docs' placeholders stand for (SPEC is a path: any word parses)
PLACEHOLDERS = {"K": "4", "T": "byte", "HOST:PORT": "127.0.0.1:6379"}


def test_every_quoted_command_parses_as_written(parser):
    commands = _quoted_commands()
    assert any(c.startswith("predict --example epoch-chinchilla") for _, c in commands), commands
    bad = []
    for doc, command in commands:
        if re.search(r"…|\||<|\[", command) or " " not in command:  # a pattern or a name, not a command
            continue
        words = [PLACEHOLDERS.get(w, w) for w in shlex.split(command)]
        try:
            args = parser.parse_args(words)
        except SystemExit:
            bad.append((doc, command))
            continue
        if args.command == "predict" and not (args.train or args.fit_max_compute):  # predict's one rule
            bad.append((doc, command))
    assert not bad, bad


# ---------------------------------------------------------------- flags named, flags read
def _subcommands(parser):
    return sorted(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_an_unknown_flag_is_named_by_its_command(parser, capsys):
    """argparse had the top-level parser say it ("scalesweep: error: unrecognized arguments"),
    which names no command whose --help lists the flags."""
    for command in _subcommands(parser):
        rc, _, err = run(capsys, command, "--bogus-flag")
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith(f"scalesweep {command}: error: "), (command, err)
    for argv in (["plan", "--compute", "1e22", "--bogus-flag"], ["fit", "--example", "epoch-chinchilla", "x", "y"]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and err.startswith(f"scalesweep {argv[0]}: error: unrecognized arguments: "), err


PARAMS = '{"E": 1.8, "A": 400, "alpha": 0.34, "B": 2000, "beta": 0.37}'


@pytest.mark.parametrize("flags", [["--bootstrap", "100"], ["--seed", "3"], ["--level", "0.5"],
                                   ["--intervals", "profile"], ["--n-col", "N"], ["--best-over", "lr"],
                                   ["--drop-top-loss", "2"], ["--loss", "ls"]])
def test_plan_from_params_refuses_the_fits_flags(capsys, flags):
    """--params plans from given parameters: a bootstrap, a seed, a level or a column flag would be
    read by nothing (--bootstrap 100 was accepted silently)."""
    rc, _, err = run(capsys, "plan", "--params", PARAMS, "--compute", "1e22", *flags)
    assert rc == 2 and err.count("\n") == 1 and err.split(": error: ")[1].startswith(flags[0]), err
    assert "--params plans without intervals" in err, err


def test_plan_from_params_names_the_flag_of_its_law_and_parameters(capsys):
    rc, _, err = run(capsys, "plan", "--params", '{"E": 1.8, "A": 400}', "--compute", "1e22")
    assert rc == 2 and "--params: law 'chinchilla': missing parameters ['alpha', 'B', 'beta']" in err, err
    fitted = '{"law": "chinchilla", "params": ' + PARAMS + "}"
    rc, _, err = run(capsys, "plan", "--params", fitted, "--law", "kaplan", "--compute", "1e22")
    assert rc == 2 and "--law kaplan: --params holds parameters of law 'chinchilla'" in err, err
    rc, _, err = run(capsys, "plan", "--params", fitted.replace('"chinchilla"', '"kaplan_n"'), "--compute", "1e22")
    assert rc == 2 and "--params (its law 'kaplan_n'): law 'kaplan_n' has neither N and D inputs nor C" in err, err
    rc, out, _ = run(capsys, "plan", "--params", PARAMS, "--compute", "1e22", "--bootstrap", "1000")
    assert rc == 0 and "no intervals" in out  # a flag typed with its default changes nothing


EXAMPLE = ["--example", "epoch-chinchilla", "--bootstrap", "0"]


@pytest.mark.parametrize("argv, message", [
    (["fit", "--best-over", "nope"], "--best-over nope: no column 'nope' in example epoch-chinchilla"),
    (["fit", "--mean-over", "nope"], "--mean-over nope: no column 'nope' in example epoch-chinchilla"),
    (["fit", "--n-col", "nope"], "--n-col nope: no column 'nope' (for N) in example epoch-chinchilla"),
    (["fit", "--n-col", "color"], "--n-col color: column 'color' in example epoch-chinchilla is not numeric"),
    (["replay", "--cost-col", "color", "--out", "/tmp/x.csv"], "--cost-col color: column 'color' in"),
    (["fit", "--col", "D=nope"], "--col D=nope: D has its own flag: --d-col nope"),
    (["fit", "--law", "data_constrained", "--u-col", "nope"], "--u-col nope: no column 'nope' (for U)"),
    (["fit", "--family", "lstm"], "--family lstm: example epoch-chinchilla records no model family"),
    (["fit", "--drop-top-loss", "1000"], "245 for 1000 highest-loss rows (--drop-top-loss)"),
    (["fit", "--drop-top-loss", "240"], "240 rows were dropped before (240 for 240 highest-loss rows (--drop-top-loss))"),
    (["fit", "--fit-max-compute", "1"], "--fit-max-compute 1 selects none of the 240 runs: too few points"),
    (["fit", "--fit-max-compute", "2e18"], "--fit-max-compute 2e+18 selects 2 of the 240 runs: too few points"),
    (["fit", "--law", "nope"], "--law nope: unknown law 'nope'"),
    (["plan", "--compute", "1e22", "--law", "kaplan_n"], "--law kaplan_n: law 'kaplan_n' has neither N and D"),
    (["predict", "--fit-max-compute", "1"], "--fit-max-compute 1 selects none of the 240 runs"),
    (["predict", "--train", "N < 1e9", "--targets", "/nonexistent/t.csv"], "--targets: runs input not found"),
    (["predict", "--law", "nope", "--train", "N < 1e9"], "--law nope: unknown law"),
    (["frontier", "--law", "nope"], "--law nope: unknown law"),
    (["replay", "--targets", "/nonexistent/t.csv", "--out", "/tmp/x.csv"], "--targets: runs input not found"),
    (["replay", "--cost-col", "nope", "--out", "/tmp/x.csv"], "--cost-col nope: no column 'nope' in the pool"),
    (["replay", "--law", "kaplan_n", "--out", "/tmp/x.csv"], "--law kaplan_n: replay's default cost of a run is 6·N·D"),
    (["replay", "--seed-runs", "1000", "--out", "/tmp/x.csv"], "--seed-runs 1000: the pool has 217 rows"),
    (["replay", "--seed-runs", "3", "--out", "/tmp/x.csv"], "--seed-runs 3: fewer than the 6 runs a fit of law"),
])
def test_input_errors_name_the_flag_the_user_typed(capsys, argv, message):
    """Each was a message without the flag ("too few points", "pool: cost column", "cost needs N
    and D columns", "runs input not found"), or (--seed-runs 1000) no message at all."""
    rc, _, err = run(capsys, *argv, *EXAMPLE)
    assert rc == 2 and message in err and err.count("\n") == 1, err


def test_a_fit_max_compute_that_keeps_every_row_is_named(capsys):
    """fit --fit-max-compute above every run warned "train selection keeps every row", a name the user
    never typed."""
    rc, out, _ = run(capsys, "fit", "--fit-max-compute", "1e30", *EXAMPLE)
    assert rc == 0 and "warning: --fit-max-compute 1e+30 keeps every row: nothing is held out" in out, out
    assert "train selection" not in out


@pytest.mark.parametrize("argv, message", [
    (["--best-over", "nope"], "--best-over nope: the report aggregates over the runs table's columns (lr, batch_tokens, seed, n_ctx"),
    (["--mean-over", "N"], "--mean-over N: the report aggregates over"),
    (["--law", "nope"], "--law nope: unknown law 'nope'"),
])
def test_report_refuses_what_it_took_for_a_failed_fit(tmp_path, capsys, argv, message):
    """report --best-over nope wrote the page with "no fit" and exit 0; now refused before the store is read."""
    rc, _, err = run(capsys, "report", tmp_path / "no-store", *argv)
    assert rc == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("command", ["run", "ladder"])
def test_num_cpus_with_address_is_refused_before_the_spec_is_read(tmp_path, capsys, command):
    """It was refused only when Ray started: after the spec's checks, Ray's import and the sweep's
    store were touched (tests/test_cluster_path.py has the refusal on a real spec)."""
    rc, _, err = run(capsys, command, tmp_path / "no-spec.yaml", "--address", "127.0.0.1:1", "--num-cpus", "2")
    assert rc == 2 and err.strip() == (f"scalesweep {command}: error: --num-cpus sets the CPUs of a local Ray; "
                                       f"with --address the cluster's nodes have theirs"), err


def test_train_refuses_explicit_sizes_with_target_params(tmp_path, capsys):
    """`train --target-params 1e6 --n-layer 7` trained a 3-layer model: the size flag was dropped."""
    rc, _, err = run(capsys, "train", "--target-params", "1e6", "--n-layer", "7")
    assert rc == 2 and err.strip() == ("scalesweep train: error: --n-layer 7: --target-params chooses n_layer, "
                                       "d_model, n_heads, d_ff; give it or explicit sizes, not both"), err
    config = tmp_path / "c.yaml"
    config.write_text("shape: {target_params: 1.0e+6}\n")
    rc, _, err = run(capsys, "train", "--config", config, "--d-model", "512")
    assert rc == 2 and f"--d-model 512: the target_params of --config {config} chooses" in err, err
    from trainers.cli import config_from_args  # --target-params over a config's explicit sizes still overrides them

    config.write_text("shape: {n_layer: 2, d_model: 64, n_heads: 2, d_ff: 256}\n")
    args = build_parser().parse_args(["train", "--config", str(config), "--target-params", "1e6"])
    assert config_from_args(args)["shape"] == {"target_params": "1e6"}


@pytest.mark.parametrize("flag", ["--sweep", "--trial-id"])
def test_train_refuses_store_names_without_a_store(capsys, flag):
    rc, _, err = run(capsys, "train", "--target-params", "1e5", flag, "mine")
    assert rc == 2 and err.strip() == (f"scalesweep train: error: {flag} mine: names the run in the metrics store; "
                                       f"without --storage nothing is written"), err


def test_validate_reference_refuses_a_spec_it_would_not_read(capsys):
    rc, _, err = run(capsys, "validate", "examples/demo.yaml", "--reference")
    assert rc == 2 and err.strip() == ("scalesweep validate: error: --reference prints the spec field reference "
                                       "and checks no spec: drop SPEC 'examples/demo.yaml', or --reference"), err
    rc, _, err = run(capsys, "validate", "--reference", "--defer-data-checks")
    assert rc == 2 and "drop --defer-data-checks" in err, err
