"""The :class:`Law` type: scaling laws as small, typed, user-extensible objects.

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
  ``rng -> (S, P)``, or ``None`` for a scrambled-Sobol sample inside ``init_box`` (also in ``z``
  space: log θ for a ``"log"`` parameter; docs/custom_laws.md);
* optionally ``data_init(X, y) -> (S, P)``: more starts in ``z`` space placed from the data's
  own scale (e.g. ``log N_c = median log N + log L / alpha_N``), so that a law whose fixed grid
  was written for one unit (FLOPs, PF-days, millions of parameters) still starts near the data
  in another: the same runs with an input multiplied by 1e4 then give the same exponents. The
  fitter, the bootstrap, profiles and the online fitter add them to ``init``'s starts;
* optionally ``grad(p, X) -> list`` of ``d prediction / d θ_k`` (natural space) for speed.
  Without it the engine differentiates ``fn`` itself (complex step, else central differences).

Also here: :func:`grid` (Cartesian start grids) and :class:`Columns` / :func:`logcol` (input
columns with cached logarithms). The built-in laws and the name registry (``get_law``) live in
:mod:`fitting.laws`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Law", "LOG", "IDENTITY", "grid", "Columns", "logcol"]

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
    data_init: Callable[[Mapping[str, np.ndarray], np.ndarray], Any] | None = None
    value_and_grad: Callable | None = None
    target: str = "loss"
    doc: str = ""
    defaults: Mapping[str, float] = field(default_factory=dict)
    # parameter -> the runs that identify it, for the degenerate-design warning (fitting.fit)
    identify: Mapping[str, str] = field(default_factory=dict)

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
    def min_runs(self) -> int:
        """Fewest runs (or aggregated cells) a fit of this law takes: its parameters + 1, so that
        one degree of freedom is left for the residual scale (fitting.online, the designer, the
        spec's checks, replay, the ladder and the report all use this one rule)."""
        return self.n_params + 1

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
        # a log-parameter beyond exp's range (a sandwich draw toward a wide bound) is inf, which every
        # caller treats as a non-finite draw or objective; numpy's warning reached users of `plan`
        with np.errstate(over="ignore"):
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
                unknown = [k for k in params if k not in self.param_names]  # a typo is named with what is missing
                raise ValueError(f"law {self.name!r}: missing parameters {missing}"
                                 + (f"; unknown {unknown} (its parameters: {', '.join(self.param_names)})"
                                    if unknown else ""))
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
    def initial_z(self, rng: np.random.Generator | None = None, X=None, y=None) -> np.ndarray:
        """Start points in ``z`` space, shape ``(S, P)``: ``init``'s (or the Sobol sample's),
        then, given the rows ``X`` and targets ``y``, the law's :meth:`data_starts`."""
        fixed = self._fixed_z(rng)
        if X is None or y is None:
            return fixed
        return np.vstack([fixed, self.data_starts(X, y)])

    def data_starts(self, X, y) -> np.ndarray:
        """``data_init``'s starts for rows ``X`` (mapping of columns) and targets ``y`` ``(n,)``,
        shape ``(S, P)`` (``(0, P)`` without ``data_init``); rows that are not finite are dropped
        (e.g. a floor above every loss)."""
        if self.data_init is None or y is None or len(np.atleast_1d(y)) == 0:
            return np.empty((0, self.n_params))
        with np.errstate(divide="ignore", invalid="ignore"):
            arr = np.asarray(self.data_init(self.columns(X), np.asarray(y, dtype=float)), dtype=float)
        arr = arr.reshape(-1, self.n_params) if arr.size else np.empty((0, self.n_params))
        return arr[np.isfinite(arr).all(axis=1)]

    def _fixed_z(self, rng: np.random.Generator | None) -> np.ndarray:
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
