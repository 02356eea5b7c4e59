"""The compiled kernel behind :mod:`flowmatch.ot.assignment`: an epsilon-scaling auction in C.

The C source (``_auction.c`` beside this module) is compiled once, on first use, with the system
C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into a shared library cached under
``$FLOWMATCH_CACHE_DIR`` (default ``$XDG_CACHE_HOME/flowmatch`` or ``~/.cache/flowmatch``), named
by a hash of the source, the flags and the platform, and loaded with :mod:`ctypes`. ctypes releases the GIL during the call, so
solves in worker threads run in parallel with training. Without a compiler (or with
``FLOWMATCH_NO_NATIVE=1``) :func:`load` returns None and callers fall back to POT's network
simplex; :func:`build_error` says why.

Algorithm (Bertsekas 1988, "The auction algorithm: a distributed relaxation method for the
assignment problem"; epsilon scaling: Bertsekas & Eckstein 1988). Minimise sum_i C[i, s(i)] over
permutations s. Column j has a price p_j; row i's value of column j is C_ij + p_j. An unassigned
row bids for its best column j1, raising p_j1 by (w2 - w1) + eps (w1, w2: its best and second-best
values) and evicting the previous owner. At the end of a phase every row i is assigned and
satisfies eps-complementary slackness, C_is(i) + p_s(i) <= min_j (C_ij + p_j) + eps. Then

    primal - dual <= n eps,   primal = sum_i C_is(i),   dual = sum_i min_j (C_ij + p_j) - sum_j p_j,

where ``dual`` is the value of the feasible dual solution (u_i = min_j (C_ij + p_j), v_j = -p_j)
and hence a lower bound on the optimum (LP duality). Since s is a permutation, primal - dual =
sum_i (w_is(i) - m_i) with w_ij = C_ij + p_j and m_i = min_j w_ij, a sum of terms >= 0; the
kernel's certified gap is that sum times 1 + (n + 2) u plus 2 u sum_i (|w_is(i)| + |m_i|)
(u = 2^-52: the rounding of the w, the minima and the sums), or the row-minimum bound
primal - sum_i min_j C_ij with its rounding, whichever is smaller. The kernel runs phases with eps
divided by ``factor`` until that gap is at most ``rtol * max(M, n u max |C_ij|)``, M the lower
bound on |optimum| that [primal - gap, primal] allows: relative to the optimum itself (1e-12 by
default), not to the spread of the costs. Prices start at -min_i C_ij and only rise, so every
w_ij >= 0 and every m_i only grows; when 2 u (sum_i w_is(i) - n eps) at the end of a phase (a lower
bound on the final rounding term) already exceeds the bound, or eps reaches the resolution of the
prices, the kernel stops with status 2 and :mod:`flowmatch.ot.assignment` finishes exactly with
SciPy's ``linear_sum_assignment``: costs whose optimum is tiny against their spread (tight
clusters far apart: prices ~ the spread, optimum ~ the clusters' width) cannot be certified in
float64 by any dual of that size.
Prices start at the column reduction p_j = -min_i C_ij instead of 0. Each row keeps its best
``CANDIDATES`` (3) columns and a threshold (the next-best value at its last full scan); since
prices only rise, a bid whose two best listed values are below the threshold needs no full scan
(Bertsekas' "third best" trick, generalised). A full scan starts from the current values of the
listed columns, which keeps its insertion path rare, and runs four doubles per instruction
where the CPU has AVX2 (:func:`load` then builds a second library with ``-mavx2``;
``FLOWMATCH_NO_AVX2=1`` keeps the portable one, SSE2 on x86-64). All scan variants do the same
additions and comparisons and so return the same assignment.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path

import numpy as np

from flowmatch._utils.cache import cache_dir

__all__ = ["load", "build_error", "variant", "squared_distances", "cache_dir", "SOURCE_PATH", "CANDIDATES"]

#: columns each row keeps between full scans (the caller allocates n * CANDIDATES for them)
CANDIDATES = 3

#: the kernel's C source
SOURCE_PATH = Path(__file__).with_name("_auction.c")


_FLAGS = ["-O3", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off", f"-DFM_K={CANDIDATES}"]
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}


def _compiler() -> str | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or ""
    cc = cc.split()[0] if cc.split() else ""
    for cand in ([cc] if cc else []) + ["cc", "gcc", "clang"]:
        path = shutil.which(cand)
        if path:
            return path
    return None


def _build(extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL:
    if sys.platform.startswith("win"):
        raise OSError("the native kernel is not built on Windows")
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC, or install cc/gcc/clang)")
    flags = [*_FLAGS, *extra_flags]
    source = SOURCE_PATH.read_text()  # OSError when the package lacks it: callers fall back to POT
    key = hashlib.sha256("\0".join([source, *flags, sys.platform, platform.machine()]).encode()).hexdigest()[:16]
    out_dir = cache_dir()
    lib_path = out_dir / f"fm_auction_{key}.so"
    if not lib_path.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            src = Path(tmp) / "fm_auction.c"
            src.write_text(source)
            tmp_lib = Path(tmp) / lib_path.name
            proc = subprocess.run(
                [cc, *flags, "-o", str(tmp_lib), str(src), "-lm"], capture_output=True, text=True, timeout=120
            )
            if proc.returncode != 0:
                raise OSError(
                    f"{cc} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
                )
            os.replace(tmp_lib, lib_path)  # atomic: concurrent builders all end with a whole file
    lib = ctypes.CDLL(str(lib_path))
    f = lib.fm_auction
    i64, dbl, ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
    f.argtypes = [i64, ptr, dbl, dbl, dbl, i64, ptr, ptr, ptr]
    f.restype = ctypes.c_int
    lib.fm_auction_many.argtypes = [i64, i64, ptr, dbl, dbl, dbl, i64, ptr, ptr, ptr, ptr, ptr]
    lib.fm_auction_many.restype = i64
    lib.fm_sqdist.argtypes = [i64, i64, i64, ptr, ptr, ptr]
    lib.fm_sqdist.restype = None
    lib.fm_cpu_avx2.argtypes = []
    lib.fm_cpu_avx2.restype = ctypes.c_int
    return lib


def _build_best() -> tuple[ctypes.CDLL, str]:
    """The portable build, or the -mavx2 build where this CPU has AVX2 and the compiler takes it
    (FLOWMATCH_NO_AVX2=1: always the portable one). Returns the library and its variant name."""
    lib = _build()
    if os.environ.get("FLOWMATCH_NO_AVX2") or not lib.fm_cpu_avx2():
        return lib, "portable"
    try:
        return _build(("-mavx2",)), "avx2"
    except (OSError, subprocess.SubprocessError):
        return lib, "portable"


def load() -> ctypes.CDLL | None:
    """The compiled kernel, built on first call; None when it cannot be built (see build_error)."""
    if "lib" in _STATE:
        return _STATE["lib"]  # type: ignore[return-value]
    with _LOCK:
        if "lib" not in _STATE:
            if os.environ.get("FLOWMATCH_NO_NATIVE"):
                _STATE["error"] = "disabled by FLOWMATCH_NO_NATIVE"
                _STATE["lib"] = None
            else:
                try:
                    _STATE["lib"], _STATE["variant"] = _build_best()
                except (OSError, subprocess.SubprocessError) as e:
                    _STATE["error"] = str(e)
                    _STATE["lib"] = None
    return _STATE["lib"]  # type: ignore[return-value]


def squared_distances(a, b):
    """(n, m) float64 array of ||a_i - b_j||^2 for float64 arrays a (n, d) and b (m, d), computed
    from the differences by the compiled kernel; None when the kernel is unavailable."""
    lib = load()
    if lib is None:
        return None
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    lib.fm_sqdist(a.shape[0], b.shape[0], a.shape[1], a.ctypes.data, b.ctypes.data, out.ctypes.data)
    return out


def variant() -> str | None:
    """Which build :func:`load` loaded: ``"avx2"`` or ``"portable"`` (None: none loaded)."""
    return _STATE.get("variant")  # type: ignore[return-value]


def build_error() -> str | None:
    """Why :func:`load` returned None (None when the kernel is loaded or not yet tried)."""
    return _STATE.get("error")  # type: ignore[return-value]
