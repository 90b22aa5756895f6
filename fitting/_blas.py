"""Keep OpenBLAS single-threaded around the many tiny solves of a fit.

L-BFGS-B (scipy >= 1.15) calls BLAS on 5-element vectors; with a multi-threaded OpenBLAS on a
busy machine each call pays thread wake-ups, which measured 6x slower here. This is a minimal,
best-effort stand-in for ``threadpoolctl.threadpool_limits(1)`` that touches only OpenBLAS
libraries already loaded into this process and restores their thread counts afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")
_LIBS: list | None = None


def _libs():
    global _LIBS
    if _LIBS is not None:
        return _LIBS
    found = []
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({ln.split()[-1] for ln in fh if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        set_ = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        if get is not None and set_ is not None:
            found.append((get, set_))
    _LIBS = found
    return found


@contextlib.contextmanager
def single_threaded_blas():
    import numpy  # noqa: F401 - make sure the libraries are loaded
    import scipy.optimize  # noqa: F401

    saved = []
    try:
        for get, set_ in _libs():
            try:
                n = int(get())
                set_(ctypes.c_int(1))
                saved.append((set_, n))
            except Exception:  # noqa: BLE001 - best effort
                continue
    except Exception:  # noqa: BLE001
        pass
    try:
        yield
    finally:
        for set_, n in saved:
            try:
                set_(ctypes.c_int(n))
            except Exception:  # noqa: BLE001
                pass
