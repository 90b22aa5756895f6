"""Scaling laws as small, typed, user-extensible objects.

A :class:`Law` is data plus one vectorised function:

* ``param_names`` and natural-space ``bounds``;
* ``transforms``: per parameter ``"log"`` (positive scales, optimised as ``log θ``) or
  ``"identity"`` (exponents); the fitting engine works in this *transformed* space ``z``,
  which is much better conditioned (Hoffmann et al. optimise ``e, a, b = log E, log A, log B``);
* ``inputs``: the table columns the law reads (``"N"``, ``"D"``, ``"U"``, ``"S"``, ``"C"``, ...);
* ``fn(p, X)``: prediction. ``p`` maps each parameter name to an array that broadcasts
  against the rows (a scalar, or shape ``(S, 1)`` when many parameter vectors are evaluated
  at once); ``X`` maps each input name to a 1-D array of rows. Use numpy ufuncs only and the
  function is vectorised over rows *and* parameter vectors for free (and complex-step
  differentiable, which the engine uses for exact derivatives);
* ``init``: an initialisation grid in ``z`` space (array ``(S, P)``), a callable
  ``rng -> (S, P)``, or ``None`` for a scrambled-Sobol sample inside ``init_box``;
* optionally ``grad(p, X) -> list`` of ``d prediction / d θ_k`` (natural space) for speed.
  Without it the engine differentiates ``fn`` itself (complex step, else central differences).

Built-in laws are defined exactly the way a user defines one, so a law loaded with
``get_law("path/to/file.py:LAW")`` or ``get_law("package.module:LAW")`` works everywhere a
built-in does (fit, bootstrap, intervals, planning, the online fitter, active design).
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "Law",
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

LOG = "log"
IDENTITY = "identity"


@dataclass(frozen=True, eq=False)  # identity equality/hash: fields hold arrays and functions
class Law:
    """A scaling law: named parameters, bounds, a vectorised prediction function, starts."""

    name: str
    param_names: tuple[str, ...]
    fn: Callable[[Mapping[str, Any], Mapping[str, np.ndarray]], np.ndarray]
    inputs: tuple[str, ...] = ("N", "D")
    bounds: tuple[tuple[float, float], ...] | None = None
    transforms: tuple[str, ...] | None = None
    init: Any = None
    init_box: tuple[tuple[float, float], ...] | None = None
    n_init: int = 512
    grad: Callable | None = None
    value_and_grad: Callable | None = None
    target: str = "loss"
    doc: str = ""
    defaults: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        P = len(self.param_names)
        if P == 0:
            raise ValueError(f"law {self.name!r}: no parameters")
        if len(set(self.param_names)) != P:
            raise ValueError(f"law {self.name!r}: duplicate parameter names {self.param_names}")
        object.__setattr__(self, "param_names", tuple(self.param_names))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        tr = tuple(self.transforms) if self.transforms is not None else (IDENTITY,) * P
        if len(tr) != P or any(t not in (LOG, IDENTITY) for t in tr):
            raise ValueError(f"law {self.name!r}: transforms must be {P} of 'log'/'identity', got {tr}")
        object.__setattr__(self, "transforms", tr)
        b = self.bounds
        if b is None:
            b = tuple((0.0, np.inf) if t == LOG else (-np.inf, np.inf) for t in tr)
        b = tuple((float(lo), float(hi)) for lo, hi in b)
        if len(b) != P:
            raise ValueError(f"law {self.name!r}: {len(b)} bounds for {P} parameters")
        for (lo, hi), t, n in zip(b, tr, self.param_names):
            if not lo < hi:
                raise ValueError(f"law {self.name!r}: empty bounds for {n}: ({lo}, {hi})")
            if t == LOG and lo < 0:
                raise ValueError(f"law {self.name!r}: log-transformed {n} needs bounds >= 0")
        object.__setattr__(self, "bounds", b)
        if self.init_box is not None and len(self.init_box) != P:
            raise ValueError(f"law {self.name!r}: init_box needs {P} entries")

    # ------------------------------------------------------------------ sizes and spaces
    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def z_bounds(self) -> np.ndarray:
        """Bounds in the transformed (optimisation) space, shape ``(P, 2)``."""
        out = np.empty((self.n_params, 2))
        with np.errstate(divide="ignore"):
            for k, ((lo, hi), t) in enumerate(zip(self.bounds, self.transforms)):
                out[k] = (np.log(lo), np.log(hi)) if t == LOG else (lo, hi)
        return out

    def to_z(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        z = theta.copy()
        for k, t in enumerate(self.transforms):
            if t == LOG:
                with np.errstate(divide="ignore", invalid="ignore"):
                    z[..., k] = np.log(theta[..., k])
        return z

    def from_z(self, z) -> np.ndarray:
        z = np.asarray(z)
        theta = z.copy()
        for k, t in enumerate(self.transforms):
            if t == LOG:
                theta[..., k] = np.exp(z[..., k])
        return theta

    def dtheta_dz(self, z) -> np.ndarray:
        """Diagonal of d θ / d z (same shape as ``z``)."""
        z = np.asarray(z)
        d = np.ones_like(z, dtype=float)
        for k, t in enumerate(self.transforms):
            if t == LOG:
                d[..., k] = np.exp(np.real(z[..., k]))
        return d

    # ------------------------------------------------------------------ parameters
    def as_array(self, params) -> np.ndarray:
        """Parameters (mapping name → value, or a sequence in ``param_names`` order) → array."""
        if isinstance(params, Mapping):
            missing = [n for n in self.param_names if n not in params]
            if missing:
                raise ValueError(f"law {self.name!r}: missing parameters {missing}")
            return np.array([float(params[n]) for n in self.param_names])
        arr = np.asarray(params, dtype=float)
        if arr.shape[-1] != self.n_params:
            raise ValueError(f"law {self.name!r}: expected {self.n_params} parameters, got shape {arr.shape}")
        return arr

    def as_dict(self, theta) -> dict[str, float]:
        theta = self.as_array(theta)
        return {n: float(v) for n, v in zip(self.param_names, theta)}

    def _pdict(self, theta) -> dict[str, np.ndarray]:
        theta = np.asarray(theta)
        if theta.ndim == 1:
            return {n: theta[k] for k, n in enumerate(self.param_names)}
        # (S, P) → each parameter (S, 1), broadcasting against rows
        return {n: theta[..., k : k + 1] for k, n in enumerate(self.param_names)}

    # ------------------------------------------------------------------ prediction
    def columns(self, X) -> dict[str, np.ndarray]:
        """Normalise inputs: a mapping of columns, or an ``(n, len(inputs))`` array."""
        if isinstance(X, Mapping):
            missing = [c for c in self.inputs if c not in X]
            if missing:
                raise ValueError(f"law {self.name!r} needs input columns {list(self.inputs)}; missing {missing}")
            if isinstance(X, Columns) and all(c in X for c in self.inputs):
                return X
            return Columns({c: np.atleast_1d(np.asarray(X[c], dtype=float)) for c in self.inputs})
        arr = np.asarray(X, dtype=float)
        if arr.ndim == 1 and len(self.inputs) == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(self.inputs):
            raise ValueError(f"law {self.name!r}: X must have columns {list(self.inputs)}")
        return Columns({c: arr[:, k] for k, c in enumerate(self.inputs)})

    def predict(self, params, X) -> np.ndarray:
        """Vectorised prediction. ``params``: dict, ``(P,)`` or ``(S, P)`` (natural space);
        ``X``: mapping of input columns or ``(n, n_inputs)`` array. Returns ``(n,)`` or ``(S, n)``."""
        theta = self.as_array(params) if isinstance(params, Mapping) else np.asarray(params)
        cols = self.columns(X)
        out = self.fn(self._pdict(theta), cols)
        n = len(next(iter(cols.values())))
        shape = (n,) if theta.ndim == 1 else theta.shape[:-1] + (n,)
        return np.broadcast_to(out, shape)

    def predict_z(self, z, X) -> np.ndarray:
        return self.predict(self.from_z(z), X)

    # ------------------------------------------------------------------ starts
    def initial_z(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Start points in ``z`` space, shape ``(S, P)``."""
        rng = np.random.default_rng(0) if rng is None else rng
        init = self.init
        if callable(init):
            init = init(rng)
        if init is not None:
            arr = np.atleast_2d(np.asarray(init, dtype=float))
            if arr.shape[1] != self.n_params:
                raise ValueError(f"law {self.name!r}: init grid has {arr.shape[1]} columns, need {self.n_params}")
            return arr
        box = self.init_box
        if box is None:
            zb = self.z_bounds
            box = [(max(lo, -5.0) if np.isfinite(lo) else -5.0, min(hi, 5.0) if np.isfinite(hi) else 5.0) for lo, hi in zb]
        box = np.asarray(box, dtype=float)
        from scipy.stats import qmc

        m = int(np.ceil(np.log2(max(self.n_init, 2))))
        u = qmc.Sobol(d=self.n_params, scramble=True, seed=rng).random_base2(m)[: self.n_init]
        return box[:, 0] + u * (box[:, 1] - box[:, 0])

    def with_(self, **changes) -> "Law":
        """A copy with fields replaced (e.g. a different init grid or bounds)."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        return f"Law({self.name!r}, params={list(self.param_names)}, inputs={list(self.inputs)})"


def grid(*axes: Sequence[float]) -> np.ndarray:
    """Cartesian product of per-parameter start values (z space), shape ``(S, P)``."""
    return np.array(list(itertools.product(*axes)), dtype=float)


class Columns(dict):
    """Input columns with cached logarithms (``X.log("N")``); a plain dict works for laws too."""

    def log(self, name):
        key = "__log_" + name
        if key not in self._cache:
            self._cache[key] = np.log(self[name])
        return self._cache[key]

    @property
    def _cache(self):
        c = self.__dict__.get("_c")
        if c is None:
            c = self.__dict__["_c"] = {}
        return c


def logcol(X, name):
    """log of an input column, cached when ``X`` is a :class:`Columns`."""
    return X.log(name) if isinstance(X, Columns) else np.log(X[name])


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
    doc="L(N, D) = E + A/N^alpha + B/D^beta. Hoffmann et al. 2022, 'Training Compute-Optimal "
    "Large Language Models', eq. (2) and App. D.2 (Huber delta=1e-3 on log L, L-BFGS grid).",
)

#: Hoffmann et al.'s printed fit (Approach 3) and Epoch AI's replication on the 240 points.
CHINCHILLA_HOFFMANN = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
CHINCHILLA_EPOCH = {"E": 1.8172, "A": 482.01, "alpha": 0.3478, "B": 2085.43, "beta": 0.3658}


# ====================================================================== Kaplan
def _maybe_E(p):
    return p["E"] if "E" in p else 0.0


def _kaplan(name, pnames, inputs, core, init_axes, doc, irreducible, transforms, bounds):
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
        doc=doc,
    )


def _single_power_law(name: str, scale: str, exponent: str, column: str, scale_grid, doc: str,
                      irreducible: bool) -> Law:
    """(scale / X[column])^exponent [+ E]: the one-variable Kaplan forms differ only in names."""
    return _kaplan(
        name, (scale, exponent), (column,), lambda p, X: (p[scale] / X[column]) ** p[exponent],
        (np.log(scale_grid), np.array([0.02, 0.05, 0.1, 0.2, 0.4])),
        doc, irreducible, (LOG, IDENTITY), ((0, np.inf), (0.0, 5.0)),
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
    )


def kaplan_ns(irreducible: bool = False) -> Law:
    """L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S [+ E]. Kaplan et al. 2020, eq. (1.6).

    Input column ``S`` is S_min = S/(1 + B_crit/B) (see :func:`fitting.allocate.s_min`)."""
    return _kaplan(
        "kaplan_ns", ("N_c", "alpha_N", "S_c", "alpha_S"), ("N", "S"),
        lambda p, X: (p["N_c"] / X["N"]) ** p["alpha_N"] + (p["S_c"] / X["S"]) ** p["alpha_S"],
        (np.log([1e9, 1e12, 1e15]), np.array([0.03, 0.08, 0.2]),
         np.log([1e1, 1e3, 1e5]), np.array([0.2, 0.5, 1.0, 2.0])),
        "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S. Kaplan et al. 2020, eq. (1.6); "
        "paper: alpha_N 0.076, N_c 6.5e13, alpha_S 0.76, S_c 2.1e3.",
        irreducible, (LOG, IDENTITY, LOG, IDENTITY), ((0, np.inf), (0.0, 5.0), (0, np.inf), (0.0, 5.0)),
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
    doc="B_crit(L) = B*/L^(1/alpha_B). Kaplan et al. 2020, eq. (1.4); paper: B* 2e8 tokens, alpha_B 0.21. "
    "Fit with the loss column holding B_crit and input L = loss.",
)

KAPLAN_PAPER = {
    "kaplan_n": {"N_c": 8.8e13, "alpha_N": 0.076},
    "kaplan_d": {"D_c": 5.4e13, "alpha_D": 0.095},
    "kaplan": {"N_c": 6.4e13, "alpha_N": 0.076, "D_c": 1.8e13, "alpha_D": 0.103},
    "kaplan_ns": {"N_c": 6.5e13, "alpha_N": 0.076, "S_c": 2.1e3, "alpha_S": 0.76},
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
    doc="Data-constrained scaling (Muennighoff et al. 2023, 'Scaling Data-Constrained Language "
    "Models', eqs. 5-7): L = E + A/N'^alpha + B/D'^beta with effective data D' = U + U R_D* "
    "(1 - exp(-R_D/R_D*)), R_D = D/U - 1 repetitions of U unique tokens, and effective params N' "
    "likewise with U_N = N_opt(U). Paper: R_D* ≈ 15.4, R_N* ≈ 5.3.",
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
            s.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise ValueError(f"law spec {spec!r}: cannot import module {target!r} ({err})") from err
    if not hasattr(module, attr):
        raise ValueError(f"law spec {spec!r}: {target} has no attribute {attr!r}")
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
            obj = obj()
        if not isinstance(obj, Law):
            raise ValueError(f"law spec {spec!r} resolved to {type(obj).__name__}, not a fitting.laws.Law")
        return obj
    raise ValueError(f"unknown law {spec!r}; built-ins: {', '.join(list_laws())}; or 'file.py:NAME' / 'pkg.module:NAME'")
