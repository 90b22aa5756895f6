"""Scaling-law fitting and experiment design: pure numpy/scipy (no Ray, no DeepSpeed).

- :mod:`fitting.law` — the ``Law`` object; :mod:`fitting.laws` — built-in laws, paper constants,
  the registry (``get_law``, bring-your-own ``file.py:LAW``).
- :mod:`fitting.data` — ``load_fit_data``: tables of runs → validated columns (the one
  column-mapping path of fit, plan, replay and the report).
- :mod:`fitting.columns` — the column mapping: which column is each law input (name guesses,
  a store's defaults, the flag that names it) and cells read as numbers.
- :mod:`fitting.checks` — what the runs can tell: ``identifiability`` of the N/D split (and so
  of the compute-optimal allocation), unit and repeated-configuration warnings.
- :mod:`fitting.reference` — reference tables shipped as package data (the Epoch Chinchilla runs).
- :mod:`fitting.fit` — ``fit_law``, ``FitResult``; :mod:`fitting.objective` (Huber/LS residuals
  and derivatives), :mod:`fitting.optim` + :mod:`fitting.multistart` (batched multi-start
  L-BFGS), :mod:`fitting.uncertainty` (sandwich covariance, bootstrap, prediction intervals).
- :mod:`fitting.extrapolation` — intervals that include the law's misfit, calibrated by held-out
  extrapolation within the fitted runs.
- :mod:`fitting.allocate` — compute-optimal N, D (closed form and numeric),
  ``compute_optimal_allocation`` (with intervals; ``scalesweep plan``).
- :mod:`fitting.dynamics` — Kaplan §5: B_crit(L), S_min, C_min, and a store's curves → the rows of
  ``critical_batch``, ``kaplan_ns`` and the ``kaplan_c`` frontier (``scalesweep fit STORE``).
- :mod:`fitting.curve_prediction` — ``predict_final_loss``: a run's final loss with an interval
  from the start of its curve (per-run power law, or the sweep's L(N, S_min));
  :mod:`fitting.reference_curves` — ``reference_prediction``: the same from the sweep's finished
  runs of the same schedule (the shared-curve rule, ``early_prediction.rule: reference``, the
  default), and ``calibrated``: an interval widened to the errors made on the finished runs;
  :mod:`fitting.schedule_law` — ``joint_prediction``: the same from Tissue et al.'s LR-annealing
  law fitted jointly across runs (measured worse, bench/early_rules.py; not wired in).
- :mod:`fitting.online` — ``OnlineFitter``: incremental refits as runs complete.
- :mod:`fitting.design` — candidates, target regions, seeds; :mod:`fitting.posterior` — the
  expected-error algebra (linearised posterior, misfit discrepancy, gains);
  :mod:`fitting.strategies` — active design and its baselines; :mod:`fitting.cost` — run cost
  from measured throughput; :mod:`fitting.replay` — the budgeted buy-reveal-refit loop and
  ``scalesweep replay``.
- :mod:`fitting.cli` — ``scalesweep fit`` / ``scalesweep plan`` and the table flags shared with
  ``replay`` (``--example``, ``--n-col``...).
"""
