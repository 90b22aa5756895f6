"""One verdict on "is this parameter identified" (fitting.checks.parameter_verdicts): the report's
fitted-laws table, `fit`, `plan`, `frontier` and `predict` name the same parameters on one small
isoFLOP store, and the rule itself says no for each of its reasons."""

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fitting.checks import Identifiability, parameter_verdicts, unidentified_note
from fitting.laws import chinchilla
from fitting.param_intervals import ParamInterval

sys.path.insert(0, str(Path(__file__).parent))
from test_report_html import write_trial  # noqa: E402  (the store written by the store code)

VALUES = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 400.0, "beta": 0.3}
CLOSED = {"E": ParamInterval(1.5, 1.9), "A": ParamInterval(300, 500), "alpha": ParamInterval(0.3, 0.38),
          "B": ParamInterval(300, 500), "beta": ParamInterval(0.25, 0.35)}


def test_each_reason_is_a_no_and_a_closed_narrow_interval_a_yes():
    ok = Identifiability(True)
    assert all(v.identified for v in parameter_verdicts(chinchilla, VALUES, CLOSED, ok, {}).values())
    cases = {  # parameter: (its interval, the words that must say why)
        "B": (ParamInterval(12.0, 9.3e3), "spans more than 2 decades"),
        "beta": (ParamInterval(0.01, 0.9), "wider than 2× the value"),
        "alpha": (ParamInterval(0.0, 0.36, lo_open=True), "open on the lower side"),
        "A": (ParamInterval(300.0, math.inf), "is not finite"),
    }
    verdicts = parameter_verdicts(chinchilla, VALUES, {**CLOSED, **{k: iv for k, (iv, _) in cases.items()}}, ok, {})
    for name, (_, words) in cases.items():
        assert not verdicts[name].identified and verdicts[name].kind == "interval", name
        assert words in verdicts[name].reason, verdicts[name].reason
        assert verdicts[name].text().startswith("not identified by these runs: its interval [")
    assert verdicts["E"].identified and verdicts["E"].text() == "[1.5, 1.9]"
    note = unidentified_note(verdicts, "law 'chinchilla'")
    assert all(f"{k} (" in note for k in cases) and "E (" not in note
    # a parameter at its bound, then an unidentified N/D split: said as such, for every parameter
    at = parameter_verdicts(chinchilla, VALUES, CLOSED, ok, {"E": "= 3e-09 (no effect on any run)"})
    assert at["E"].kind == "bound" and at["E"].text() == "not identified: at a bound: E = 3e-09 (no effect on any run)"
    split = parameter_verdicts(chinchilla, VALUES, CLOSED, Identifiability(False, "one model size"), {})
    assert {v.kind for v in split.values()} == {"split"} and not any(v.identified for v in split.values())
    assert unidentified_note(split) is None  # its own warning, for every parameter
    # at a bound: its own warning too, and named here as well, so the text lists what --json's not_identified does
    assert unidentified_note(at).startswith("not identified by these runs: E (at a bound: E = 3e-09")


def cli_json(argv: list[str]) -> dict:
    from scalesweep.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(argv) == 0, argv
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def named(text: str) -> set[str]:
    """The parameters an unidentified-note names ("not identified by these runs: B (...); beta (...)")."""
    head = text.split("not identified by these runs: ", 1)[1]
    return {part.split(" (", 1)[0] for part in head.split("); ") if " (" in part} & set(VALUES)


@pytest.fixture(scope="module")
def iso_store(tmp_path_factory):
    """Two isoFLOP budgets of three sizes each (6 runs, 5 chinchilla parameters): the fit is made,
    the N/D split is identified, and some parameters' intervals are too wide to mean anything."""
    root = tmp_path_factory.mktemp("iso")
    store = str(root / "store")
    rng = np.random.default_rng(0)
    for k, (C, N) in enumerate((C, N) for C in (1e15, 1e16) for N in (2e5, 6e5, 2e6)):
        write_trial(store, "iso", f"t{k}", N, C / (6 * N), rng)
    return root, store


def test_report_fit_plan_frontier_and_predict_name_the_same_unidentified_parameters(iso_store):
    from orchestrator.report import build_report
    from orchestrator.report_html import param_rows

    root, store = iso_store
    report = build_report(store, "iso", str(root / "out"))  # its main fit: 200 bootstrap resamples, seed 0
    in_report = {name for name, _, text in param_rows(report.fit) if text.startswith("not identified")}
    assert in_report and in_report != set(VALUES)  # a mixed verdict, so agreeing is not trivial
    page = (root / "out" / "report.html").read_text()
    assert all(f"<td>{name}</td>" in page for name in in_report) and "not identified by these runs" in page

    sweep, same = f"{store}/iso", ["--bootstrap", "200", "--seed", "0"]
    fit = cli_json(["fit", sweep, *same, "--json"])
    assert {k for k, why in fit["not_identified"].items() if why} == in_report
    plan = cli_json(["plan", sweep, *same, "--compute", "1e17", "--json"])
    assert {k for k, why in plan["fit"]["not_identified"].items() if why} == in_report
    assert [named(n) for n in plan["plans"][0]["notes"] if "not identified" in n] == [in_report]
    frontier = cli_json(["frontier", sweep, *same, "--json"])
    parametric = next(a for a in frontier["approaches"] if a["approach"] == "parametric")
    assert [named(n) for n in parametric["notes"] if "not identified" in n] == [in_report]
    targets = root / "targets.csv"
    targets.write_text("N,D\n4e6,4e7\n")
    predicted = cli_json(["predict", sweep, *same, "--train", "C > 0", "--targets", str(targets), "--json"])
    assert [named(n) for n in predicted["warnings"] if "not identified" in n] == [in_report]


def test_the_summary_fit_prints_tags_the_same_parameters(iso_store, capsys):
    from scalesweep.cli import main

    _, store = iso_store
    assert main(["fit", f"{store}/iso", "--bootstrap", "200"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0] in VALUES}
    tagged = {k for k, line in rows.items() if line.rstrip().endswith("not identified")}
    as_json = cli_json(["fit", f"{store}/iso", "--bootstrap", "200", "--json"])
    assert tagged == {k for k, why in as_json["not_identified"].items() if why} and tagged
