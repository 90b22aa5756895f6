"""Scaling-law fitting: pure numpy/scipy (no Ray, no DeepSpeed).

- :mod:`fitting.laws` — laws as small objects (built-ins and bring-your-own), ``get_law``.
- :mod:`fitting.data` — ``load_fit_data``: tables of runs → validated columns.
- :mod:`fitting.fit` — ``fit_law``, ``bootstrap``, ``prediction_interval``, ``log_jacobian``.
- :mod:`fitting.allocate` — compute-optimal N, D (closed form and numeric), ``plan``.
- :mod:`fitting.cli` — ``scalesweep fit`` / ``scalesweep plan``.
"""
