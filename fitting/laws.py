"""Built-in scaling laws and the law registry (``get_law``, ``register_law``, ``list_laws``).

The :class:`~fitting.law.Law` type itself (and ``grid``, ``Columns``, ``logcol``) lives in
:mod:`fitting.law`: a law of your own imports ``from fitting.law import Law``.

Built-in laws are defined exactly the way a user defines one, so a law loaded with
``get_law("path/to/file.py:LAW")`` or ``get_law("package.module:LAW")`` works everywhere a
built-in does (fit, bootstrap, intervals, planning, the online fitter, active design).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Callable

import numpy as np

from fitting.law import IDENTITY, LOG, Law, grid, logcol
from fitting.law_starts import (
    chinchilla_starts, critical_batch_starts, data_constrained_starts, kaplan_nd_starts, power_terms,
)

__all__ = [
    "get_law",
    "register_law",
    "list_laws",
    "chinchilla",
    "kaplan_n",
    "kaplan_d",
    "kaplan_c",
    "kaplan_nd",
    "kaplan_ns",
    "critical_batch",
    "data_constrained",
    "effective_data",
    "effective_params",
    "CHINCHILLA_HOFFMANN",
    "CHINCHILLA_EPOCH",
    "KAPLAN_PAPER",
]


# ====================================================================== Chinchilla
def _chinchilla_fn(p, X):
    return p["E"] + p["A"] * np.exp(-p["alpha"] * logcol(X, "N")) + p["B"] * np.exp(-p["beta"] * logcol(X, "D"))


def _chinchilla_vg(p, X):
    lN, lD = logcol(X, "N"), logcol(X, "D")
    tn = np.exp(-p["alpha"] * lN)
    td = np.exp(-p["beta"] * lD)
    atn, btd = p["A"] * tn, p["B"] * td
    mu = p["E"] + atn + btd
    return mu, [1.0, tn, -atn * lN, td, -btd * lD]


def _chinchilla_grad(p, X):
    return _chinchilla_vg(p, X)[1]


HOFFMANN_GRID = grid(
    np.arange(-1.0, 1.01, 0.5),  # e = log E
    np.arange(0.0, 25.1, 5.0),  # a = log A
    np.arange(0.0, 2.01, 0.5),  # alpha
    np.arange(0.0, 25.1, 5.0),  # b = log B
    np.arange(0.0, 2.01, 0.5),  # beta
)  # 5 * 6 * 5 * 6 * 5 = 4,500 starts (Hoffmann et al. 2022, App. D.2)

chinchilla = Law(
    name="chinchilla",
    param_names=("E", "A", "alpha", "B", "beta"),
    fn=_chinchilla_fn,
    grad=_chinchilla_grad,
    value_and_grad=_chinchilla_vg,
    transforms=(LOG, LOG, IDENTITY, LOG, IDENTITY),
    bounds=((0, np.inf), (0, np.inf), (-1.0, 5.0), (0, np.inf), (-1.0, 5.0)),
    init=HOFFMANN_GRID,
    data_init=chinchilla_starts,
    doc="L(N, D) = E + A/N^alpha + B/D^beta. Hoffmann et al. 2022, 'Training Compute-Optimal "
    "Large Language Models', eq. (2) and App. D.2 (Huber delta=1e-3 on log L, L-BFGS grid).",
)

#: Hoffmann et al.'s printed fit (Approach 3) and Epoch AI's replication on the 240 points.
CHINCHILLA_HOFFMANN = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
CHINCHILLA_EPOCH = {"E": 1.8172, "A": 482.01, "alpha": 0.3478, "B": 2085.43, "beta": 0.3658}


# ====================================================================== Kaplan
def _maybe_E(p):
    return p["E"] if "E" in p else 0.0


def _kaplan(name, pnames, inputs, core, init_axes, doc, irreducible, transforms, bounds, data_init):
    if irreducible:
        pnames = ("E",) + pnames
        transforms = (LOG,) + transforms
        bounds = ((0, np.inf),) + bounds
        init_axes = (np.array([-3.0, -1.0, 0.0, 0.5]),) + init_axes
        name = name + "+E"
        doc = doc + " With an irreducible-loss term: L = E + (...)."
    return Law(
        name=name,
        param_names=pnames,
        fn=lambda p, X: _maybe_E(p) + core(p, X),
        inputs=inputs,
        transforms=transforms,
        bounds=bounds,
        init=grid(*init_axes),
        data_init=data_init(irreducible),  # the fixed grid is written for one unit; these follow the data
        doc=doc,
    )


def _single_power_law(name: str, scale: str, exponent: str, column: str, scale_grid, doc: str,
                      irreducible: bool) -> Law:
    """(scale / X[column])^exponent [+ E]: the one-variable Kaplan forms differ only in names."""
    return _kaplan(
        name, (scale, exponent), (column,), lambda p, X: (p[scale] / X[column]) ** p[exponent],
        (np.log(scale_grid), np.array([0.02, 0.05, 0.1, 0.2, 0.4])),
        doc, irreducible, (LOG, IDENTITY), ((0, np.inf), (0.0, 5.0)),
        lambda irr: power_terms((column,), irr),
    )


def kaplan_n(irreducible: bool = False) -> Law:
    """L(N) = (N_c/N)^alpha_N [+ E]. Kaplan et al. 2020, eq. (1.1)."""
    return _single_power_law(
        "kaplan_n", "N_c", "alpha_N", "N", [1e8, 1e11, 1e14, 1e17],
        "L(N) = (N_c/N)^alpha_N. Kaplan et al. 2020, eq. (1.1); paper: alpha_N 0.076, N_c 8.8e13.", irreducible)


def kaplan_d(irreducible: bool = False) -> Law:
    """L(D) = (D_c/D)^alpha_D [+ E]. Kaplan et al. 2020, eq. (1.2)."""
    return _single_power_law(
        "kaplan_d", "D_c", "alpha_D", "D", [1e8, 1e11, 1e14, 1e17],
        "L(D) = (D_c/D)^alpha_D. Kaplan et al. 2020, eq. (1.2); paper: alpha_D 0.095, D_c 5.4e13.", irreducible)


def kaplan_c(irreducible: bool = False) -> Law:
    """L(C_min) = (C_c/C_min)^alpha_C [+ E]. Kaplan et al. 2020, eq. (1.3). Input column ``C``."""
    return _single_power_law(
        "kaplan_c", "C_c", "alpha_C", "C", [1e5, 1e8, 1e11, 1e14],
        "L(C_min) = (C_c/C_min)^alpha_C. Kaplan et al. 2020, eq. (1.3) (C in PF-days there).", irreducible)


def kaplan_nd(irreducible: bool = False) -> Law:
    """L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D [+ E]. Kaplan et al. 2020, eq. (1.5)."""
    return _kaplan(
        "kaplan", ("N_c", "alpha_N", "D_c", "alpha_D"), ("N", "D"),
        lambda p, X: ((p["N_c"] / X["N"]) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / X["D"]) ** p["alpha_D"],
        (np.log([1e9, 1e12, 1e15]), np.array([0.03, 0.08, 0.2, 0.4]),
         np.log([1e9, 1e12, 1e15]), np.array([0.03, 0.1, 0.2, 0.4])),
        "L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D. Kaplan et al. 2020, eq. (1.5); "
        "paper: alpha_N 0.076, alpha_D 0.103, N_c 6.4e13, D_c 1.8e13.",
        irreducible, (LOG, IDENTITY, LOG, IDENTITY), ((0, np.inf), (1e-4, 5.0), (0, np.inf), (1e-4, 5.0)),
        kaplan_nd_starts,
    )


def kaplan_ns(irreducible: bool = False) -> Law:
    """L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S [+ E]. Kaplan et al. 2020, eq. (1.6).

    Input column ``S`` is S_min = S/(1 + B_crit/B) (see :func:`fitting.dynamics.min_steps`)."""
    return _kaplan(
        "kaplan_ns", ("N_c", "alpha_N", "S_c", "alpha_S"), ("N", "S"),
        lambda p, X: (p["N_c"] / X["N"]) ** p["alpha_N"] + (p["S_c"] / X["S"]) ** p["alpha_S"],
        (np.log([1e9, 1e12, 1e15]), np.array([0.03, 0.08, 0.2]),
         np.log([1e1, 1e3, 1e5]), np.array([0.2, 0.5, 1.0, 2.0])),
        "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S. Kaplan et al. 2020, eq. (1.6); "
        "paper: alpha_N 0.076, N_c 6.5e13, alpha_S 0.76, S_c 2.1e3.",
        irreducible, (LOG, IDENTITY, LOG, IDENTITY), ((0, np.inf), (0.0, 5.0), (0, np.inf), (0.0, 5.0)),
        lambda irr: power_terms(("N", "S"), irr),
    )


critical_batch = Law(
    name="critical_batch",
    param_names=("B_star", "alpha_B"),
    fn=lambda p, X: p["B_star"] / X["L"] ** (1.0 / p["alpha_B"]),
    inputs=("L",),
    target="B_crit",
    transforms=(LOG, IDENTITY),
    bounds=((0, np.inf), (1e-3, 10.0)),
    init=grid(np.log([1e6, 1e8, 1e10]), np.array([0.1, 0.2, 0.4, 0.8])),
    data_init=critical_batch_starts,
    doc="B_crit(L) = B*/L^(1/alpha_B). Kaplan et al. 2020, eq. (1.4); paper: B* 2e8 tokens, alpha_B 0.21. "
    "Fit with the loss column holding B_crit and input L = loss.",
)

KAPLAN_PAPER = {
    "kaplan_n": {"N_c": 8.8e13, "alpha_N": 0.076},
    "kaplan_d": {"D_c": 5.4e13, "alpha_D": 0.095},
    "kaplan": {"N_c": 6.4e13, "alpha_N": 0.076, "D_c": 1.8e13, "alpha_D": 0.103},
    "kaplan_ns": {"N_c": 6.5e13, "alpha_N": 0.076, "S_c": 2.1e3, "alpha_S": 0.76},
    # eq. (1.3): alpha_C^min 0.050, C_c^min 3.1e8 PF-days, here in FLOPs (1 PF-day = 8.64e19 FLOPs)
    "kaplan_c": {"C_c": 3.1e8 * 8.64e19, "alpha_C": 0.050},
    "critical_batch": {"B_star": 2e8, "alpha_B": 0.21},
}


# ====================================================================== data-constrained
def effective_data(D, U, R_D_star):
    """Muennighoff et al. 2023, eq. (5): D' = U + U·R*·(1 − exp(−R/R*)), R = D/U − 1 ≥ 0."""
    U = np.minimum(U, D)
    R = D / U - 1.0
    return U + U * R_D_star * (1.0 - np.exp(-R / R_D_star))


def effective_params(N, U_N, R_N_star):
    """Muennighoff et al. 2023, eq. (6): N' = U_N + U_N·R_N*·(1 − exp(−R_N/R_N*)), R_N = N/U_N − 1."""
    U_N = np.minimum(U_N, N)
    R = N / U_N - 1.0
    return U_N + U_N * R_N_star * (1.0 - np.exp(-R / R_N_star))


def _dc_fn(p, X):
    N, D, U = X["N"], X["D"], X["U"]
    a, b = p["alpha"], p["beta"]
    U_D = np.minimum(U, D)
    Dp = effective_data(D, U_D, p["R_D_star"])
    # U_N: the compute-optimal N for D = U_D tokens under the law's own Chinchilla terms
    # (D_opt = G^-1 (C/6)^(a/(a+b)), N_opt = G (C/6)^(b/(a+b)), G = (aA/(bB))^(1/(a+b))).
    G = (a * p["A"] / (b * p["B"])) ** (1.0 / (a + b))
    U_N = G * (U_D * G) ** (b / a)
    Np = effective_params(N, U_N, p["R_N_star"])
    return p["E"] + p["A"] * Np ** (-a) + p["B"] * Dp ** (-b)


data_constrained = Law(
    name="data_constrained",
    param_names=("E", "A", "alpha", "B", "beta", "R_D_star", "R_N_star"),
    fn=_dc_fn,
    inputs=("N", "D", "U"),
    transforms=(LOG, LOG, IDENTITY, LOG, IDENTITY, LOG, LOG),
    bounds=((0, np.inf), (0, np.inf), (1e-3, 5.0), (0, np.inf), (1e-3, 5.0), (1e-2, 1e4), (1e-2, 1e4)),
    init=grid(
        [-1.0, 0.0, 0.5], [0.0, 5.0, 10.0], [0.2, 0.5, 1.0], [0.0, 5.0, 10.0], [0.2, 0.5, 1.0],
        np.log([2.0, 15.0, 100.0]), np.log([1.0, 5.0, 50.0]),
    ),
    data_init=data_constrained_starts,
    doc="Data-constrained scaling (Muennighoff et al. 2023, 'Scaling Data-Constrained Language "
    "Models', eqs. 5-7): L = E + A/N'^alpha + B/D'^beta with effective data D' = U + U R_D* "
    "(1 - exp(-R_D/R_D*)), R_D = D/U - 1 repetitions of U unique tokens, and effective params N' "
    "likewise with U_N = N_opt(U). Paper: R_D* ≈ 15.4, R_N* ≈ 5.3.",
    identify={"R_D_star": "runs with repeated data (U < D: several epochs over fewer unique tokens)",
              "R_N_star": "runs with models larger than compute-optimal for their unique tokens (N above U_N)"},
)


# ====================================================================== registry
_BUILTIN: dict[str, Callable[[], Law]] = {
    "chinchilla": lambda: chinchilla,
    "kaplan": lambda: kaplan_nd(),
    "kaplan_nd": lambda: kaplan_nd(),
    "kaplan_n": lambda: kaplan_n(),
    "kaplan_d": lambda: kaplan_d(),
    "kaplan_c": lambda: kaplan_c(),
    "kaplan_ns": lambda: kaplan_ns(),
    "critical_batch": lambda: critical_batch,
    "data_constrained": lambda: data_constrained,
}
_IRREDUCIBLE = {"kaplan": kaplan_nd, "kaplan_nd": kaplan_nd, "kaplan_n": kaplan_n, "kaplan_d": kaplan_d,
                "kaplan_c": kaplan_c, "kaplan_ns": kaplan_ns}
_USER: dict[str, Law] = {}


def register_law(law: Law, name: str | None = None) -> Law:
    """Make ``law`` resolvable by name with :func:`get_law`."""
    if not isinstance(law, Law):
        raise TypeError(f"register_law expects a Law, got {type(law).__name__}")
    _USER[name or law.name] = law
    return law


def list_laws() -> list[str]:
    return sorted(set(_BUILTIN) | set(_USER) | {k + "+E" for k in _IRREDUCIBLE})


def _load_object(spec: str):
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ValueError(f"law spec {spec!r}: expected 'path/to/file.py:NAME' or 'package.module:NAME'")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = os.path.abspath(os.path.expanduser(target))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"law file not found: {target}")
        mod_name = "scalesweep_user_law_" + str(abs(hash(path)))
        if mod_name in sys.modules:
            module = sys.modules[mod_name]
        else:
            s = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(s)
            sys.modules[mod_name] = module
            try:
                s.loader.exec_module(module)
            except Exception as err:  # the user's file is the input here: one line, not its traceback
                del sys.modules[mod_name]
                where = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
                raise ValueError(f"law file {target} cannot be loaded{where}: {type(err).__name__}: {err}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise ValueError(f"law spec {spec!r}: cannot import module {target!r} ({err})") from err
    if not hasattr(module, attr):
        names = sorted(k for k, v in vars(module).items() if isinstance(v, Law))
        raise ValueError(f"law spec {spec!r}: {target} has no attribute {attr!r}"
                         + (f" (its laws: {', '.join(names)})" if names else ""))
    return getattr(module, attr)


def get_law(name_or_spec) -> Law:
    """Resolve a law: a :class:`Law` (returned as is), a built-in name (``chinchilla``,
    ``kaplan``, ``kaplan_n``, ``kaplan_d``, ``kaplan_c``, ``kaplan_ns``, ``critical_batch``,
    ``data_constrained``; append ``+E`` to a Kaplan form for an irreducible term), a registered
    name, ``path/to/file.py:LAW`` or ``package.module:LAW`` (the attribute may be a Law or a
    zero-argument factory returning one)."""
    if isinstance(name_or_spec, Law):
        return name_or_spec
    spec = str(name_or_spec).strip()
    if spec in _USER:
        return _USER[spec]
    if spec in _BUILTIN:
        return _BUILTIN[spec]()
    if spec.endswith("+E") and spec[:-2] in _IRREDUCIBLE:
        return _IRREDUCIBLE[spec[:-2]](irreducible=True)
    if ":" in spec:
        obj = _load_object(spec)
        if callable(obj) and not isinstance(obj, Law):
            if _required_args(obj):  # a bare model function, not a factory: say what a law is
                raise ValueError(f"law {spec!r} is a plain function of {', '.join(_required_args(obj))}; "
                                 f"wrap it in fitting.law.Law(name, param_names, fn(p, X), ...) "
                                 f"({USER_LAW_DOC})")
            obj = obj()
        if not isinstance(obj, Law):
            raise ValueError(f"law spec {spec!r} resolved to {type(obj).__name__}, not a fitting.law.Law "
                             f"({USER_LAW_DOC})")
        check_law(obj, spec)
        return obj
    raise ValueError(f"unknown law {spec!r}; built-ins: {', '.join(list_laws())}; or 'file.py:NAME' / 'pkg.module:NAME'")


#: Where writing a law of one's own is explained (named by the errors below).
USER_LAW_DOC = "see docs/custom_laws.md"


def _required_args(fn) -> list[str]:
    """Names of ``fn``'s positional parameters without a default (empty for a factory)."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    return [n for n, p in sig.parameters.items() if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


class _Unknown(Exception):
    """A law function read a name its law does not declare (raised by `_Probe`)."""


class _Probe(dict):
    """Parameters or input columns that name what is missing instead of a bare KeyError."""

    def __init__(self, values, what: str):
        super().__init__(values)
        self.what = what

    def __missing__(self, key):
        raise _Unknown(f"its function reads {self.what}[{key!r}], which is not one of its "
                       f"{'parameters' if self.what == 'p' else 'inputs'} ({', '.join(self)})")


def check_law(law: Law, spec: str) -> None:
    """Evaluate a user's ``law`` once on a few made-up rows before any fitting, so that a typo in
    a parameter or input name, or a function that does not return one value per row, is a
    ValueError naming ``spec`` and the problem (the CLI's one line, exit 2) rather than a
    traceback from deep in the fitter. Values: the middle of each parameter's start box (z space,
    as `Law.initial_z` samples it), inputs 1e8, 1e9, 1e10."""
    for name, t, (lo, hi) in zip(law.param_names, law.transforms, law.init_box or ()):
        if t == LOG and max(abs(lo), abs(hi)) > 700:  # exp overflows: a box written in natural units
            raise ValueError(f"law {spec!r}: init_box for {name} is ({lo:g}, {hi:g}), but init_box is in the "
                             f"fitted space, log {name} for a 'log' parameter; for {name} from {lo:g} to {hi:g} "
                             f"write ({np.log(max(lo, 1e-300)):.3g}, {np.log(max(hi, 1e-300)):.3g})")
    zb = law.z_bounds
    box = (np.asarray(law.init_box, float) if law.init_box is not None  # z space, as `Law.initial_z` reads it
           else np.clip(np.where(np.isfinite(zb), zb, np.sign(zb) * 5.0), -5.0, 5.0))
    z = box.mean(axis=1)
    with np.errstate(all="ignore"):  # a start box past exp's range is the fitter's to report
        theta = law.from_z(z)
    rows = 3
    X = _Probe({c: np.array([1e8, 1e9, 1e10]) for c in law.inputs}, "X")
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(law.fn(_Probe({n: theta[k] for k, n in enumerate(law.param_names)}, "p"), X))
            many = np.asarray(law.fn(_Probe({n: np.full((2, 1), theta[k]) for k, n in enumerate(law.param_names)},
                                            "p"), X))
    except _Unknown as err:
        raise ValueError(f"law {spec!r}: {err}") from None
    except Exception as err:
        raise ValueError(f"law {spec!r}: its function fails on {rows} rows of {', '.join(law.inputs)}: "
                         f"{type(err).__name__}: {err}") from None
    if out.shape not in ((), (rows,)) or many.shape not in ((), (2, 1), (2, rows)):
        got = out.shape if out.shape not in ((), (rows,)) else many.shape
        raise ValueError(f"law {spec!r}: its function must return one value per row (shape (n,) for n rows, "
                         f"(S, n) for S parameter vectors of shape (S, 1)); for {rows} rows it returned shape {got}")
