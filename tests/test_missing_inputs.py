"""Commands that read a store or a file and write outputs: a missing or wrong input is one line
on stderr, exit 2, and nothing is created."""

import re
import csv

import numpy as np
import pytest

from scalesweep.cli import main
from metrics import TrialWriter, require_sweep


def _run_row(n: float) -> dict:
    return dict(status="completed", n_layer=2, d_model=64, n_heads=4, d_ff=256, n_ctx=64, vocab_size=256,
                non_embedding_params=int(n), dataset_tokens=10**9, regime="tokens", batch_tokens=1024, lr=1e-3,
                seed=0, tokens_seen=10**9, steps=10, flops=6e9 * n, wall_s=1.0, best_val_loss=2 + 30 / n**0.3)


def _tree(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"scalesweep {command}: error: "), captured.err
    return captured.err


def test_fit_on_a_store_root_or_stray_directory_names_it(tmp_path, capsys):
    store = tmp_path / "store"
    for i, n in enumerate([1e5, 1e6, 1e7, 1e8]):
        TrialWriter(str(store), "sw", f"t{i}").write_run(_run_row(n))
    before = _tree(tmp_path)
    assert main(["fit", str(store), "--law", "kaplan_n"]) == 2
    assert "is a metrics store, not a sweep: give one of its sweeps' directories (sw)" in _one_error_line(capsys, "fit")
    (tmp_path / "empty").mkdir()
    assert main(["plan", str(tmp_path / "empty"), "--compute", "1e20"]) == 2
    assert "not a sweep's metrics directory" in _one_error_line(capsys, "plan")
    assert main(["fit", str(tmp_path / "missing"), "--law", "kaplan_n"]) == 2
    assert "not found" in _one_error_line(capsys, "fit")
    assert _tree(tmp_path) == sorted(before + ["empty"])
    require_sweep(str(store / "sw"))  # the sweep directory itself is accepted
    assert main(["fit", str(store / "sw"), "--law", "kaplan_n", "--bootstrap", "0"]) == 0


def test_replay_out_into_a_missing_directory_fails_before_any_work(tmp_path, capsys):
    n = np.geomspace(1e6, 1e9, 6)
    with open(tmp_path / "pool.csv", "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["N", "D", "loss"])
        rows.writerows((a, 20 * a, 1.7 + 400 / a**0.34 + 1200 / (20 * a) ** 0.3) for a in n)
    before = _tree(tmp_path)
    out = tmp_path / "no" / "such" / "predictions.csv"
    assert main(["replay", str(tmp_path / "pool.csv"), "--targets", str(tmp_path / "pool.csv"), "--out", str(out)]) == 2
    assert f"--out: directory {out.parent} does not exist" in _one_error_line(capsys, "replay")
    assert main(["replay", str(tmp_path / "pool.csv"), "--targets", str(tmp_path / "pool.csv"), "--out",
                 str(tmp_path)]) == 2
    assert "is a directory, not a file" in _one_error_line(capsys, "replay")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("argv", [
    ["validate", "{dir}"],
    ["demo", "--spec", "{dir}", "--out", "{dir}/demo_out"],
    ["train", "--config", "{dir}", "--storage", "{dir}/store"],
])
def test_a_directory_where_a_file_belongs_is_one_line_exit_2(tmp_path, capsys, argv):
    argv = [a.format(dir=tmp_path) for a in argv]
    assert main(argv) == 2
    assert re.search(r"is a directory", _one_error_line(capsys, argv[0]), re.I)
    assert _tree(tmp_path) == []
