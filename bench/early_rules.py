"""Final-loss prediction error of the early-prediction rules on stored sweeps (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python bench/early_rules.py --store DIR [--store DIR ...]

Each run of each stored sweep (bench/early_prediction.py's, whole curves) is predicted from the
evaluation it had made at 30, 50 and 70 % of its planned steps, causally: the other runs of its
sweep enter as far as they had got at that evaluation's wall-clock time (stored timestamps). The
prediction is compared with the loss a fit takes from the finished run (its best evaluation).
Rules: ``own`` (the trials' stopper: the run's own curve, LR-schedule law), ``reference``
(`fitting.reference_curves`: the nearest-N finished run of the same schedule, shifted), ``joint``
(`fitting.schedule_law`: Tissue et al.'s law fitted jointly to the same-N runs, per-curve L0),
``joint1`` (the same with one shared L0) and ``amplitudes`` (the law fitted jointly to the runs
with the same schedule, every N: α, λ, C shared, L0 and A per curve). ``referenceK``: the
reference rule with its offset averaged over the last K evaluations (default 4). Prints per rule and fraction: runs predicted (with a finite
positive prediction), rms and mean of the log error, and the 90 % intervals' coverage.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def sweep_view(runs, curves):
    """{trial_id: (row, steps, losses, times)} sorted by step."""
    by = {}
    for c in curves:
        by.setdefault(c["trial_id"], []).append(c)
    out = {}
    for r in runs:
        cs = sorted(by[r["trial_id"]], key=lambda c: c["step"])
        out[r["trial_id"]] = (r, np.array([c["step"] for c in cs], float), np.array([c["val_loss"] for c in cs], float),
                              np.array([c["timestamp"].timestamp() for c in cs], float))
    return out


def lr_of(total, cache={}):
    from early_prediction import trainer_schedule
    from trainers.config import lr_multiplier

    if total not in cache:
        cache[total] = np.array([lr_multiplier(i, total, *trainer_schedule()) for i in range(total)])
    return cache[total]


def predict(rule, tid, view, fraction):
    """(prediction, truth) or None; the other runs as of the decision's time."""
    from fitting.curve_prediction import predict_final_loss
    from fitting.reference_curves import POINTS, ReferenceCurve, reference_prediction
    from fitting.schedule_law import Curve, joint_prediction

    row, s, y, t = view[tid]
    total = int(row["planned_steps"])
    k = int(np.searchsorted(s, fraction * total, side="right"))
    if k < 5 or k >= s.size:
        return None
    now, store = t[k - 1], tid.split("/")[0]
    truth = float(row["best_val_loss"])
    same_store = [(q, v) for q, v in view.items() if q != tid and q.split("/")[0] == store]
    try:
        if rule == "own":
            return predict_final_loss(s[:k], y[:k], total, lr_schedule=lr_of(total)), truth
        if rule.startswith("reference"):
            refs = [ReferenceCurve(float(v[0]["non_embedding_params"]), int(v[0]["planned_steps"]), v[1], v[2],
                                   float(v[0]["best_val_loss"])) for q, v in same_store if v[3][-1] <= now]
            return reference_prediction(s[:k], y[:k], total, float(row["non_embedding_params"]), refs,
                                        points=int(rule[9:] or POINTS)), truth
        others = []
        shared = "non_embedding_params" if rule.startswith("joint") else "planned_steps"  # same N / schedule
        for q, v in same_store:
            if v[0][shared] != row[shared]:
                continue
            seen = v[3] <= now
            if seen.sum() >= 3:
                others.append(Curve(v[1][seen], v[2][seen], lr_of(int(v[0]["planned_steps"]))))
        run = Curve(s[:k], y[:k], lr_of(total))
        return joint_prediction(run, others, offsets=rule != "joint1", amplitudes=rule == "amplitudes"), truth
    except ValueError:
        return None


def main(argv=None):
    from early_prediction import load_pooled

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", action="append", required=True)
    ap.add_argument("--sweep", default="early")
    ap.add_argument("--rule", action="append", help="own, reference, referenceK (K evaluations in the offset), "
                                                    "joint, joint1, amplitudes (default: all but referenceK)")
    args = ap.parse_args(argv)
    for rule in args.rule or ():  # a typo once printed another rule's numbers under its name
        if not re.fullmatch(r"own|reference\d*|joint1?|amplitudes", rule):
            ap.error(f"--rule: unknown rule {rule!r}; one of own, reference, referenceK, joint, joint1, amplitudes "
                     f"(repeat --rule for several)")
    runs, curves = load_pooled(args.store, args.sweep)
    view = sweep_view(runs, curves)
    print(f"{len(args.store)} sweeps, {len(runs)} runs")
    print(f"{'rule':>10} {'at':>4} {'runs':>5} {'rms err':>8} {'mean err':>9} {'90% held':>9}")
    for rule in args.rule or ("own", "reference", "joint", "joint1", "amplitudes"):
        for fraction in (0.3, 0.5, 0.7):
            out = [p for tid in view if (p := predict(rule, tid, view, fraction)) is not None
                   and np.isfinite(p[0].loss) and p[0].loss > 0]
            if not out:
                print(f"{rule:>10} {fraction:>4g} {0:>5d}")
                continue
            err = np.array([np.log(p.loss / truth) for p, truth in out])
            held = np.mean([p.lo <= truth <= p.hi for p, truth in out])
            print(f"{rule:>10} {fraction:>4g} {len(out):>5d} {np.sqrt(np.mean(err ** 2)):>8.2%} {err.mean():>+9.2%} {held:>9.0%}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
