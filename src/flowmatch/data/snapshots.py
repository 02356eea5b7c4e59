"""Time-labelled snapshot data (population time courses) and a built-in synthetic course.

A time course is a set of samples ``x`` (N, D) with a time label ``t`` (N,): at each distinct time
t_k a population of N_k points was observed (e.g. single-cell RNA measured at a few days, embedded
in a few principal components). Cells are destroyed by the measurement, so the populations of
different times are different points: only the marginals p_{t_k} are known, not the trajectories
(Tong et al. TMLR 2024, Section 5.3; Tong et al. ICML 2020, TrajectoryNet).

File formats read by :func:`load_snapshots` (and written by :func:`save_snapshots`):

- ``.npz`` with an array ``x`` of shape (N, D) and an array ``t`` (or ``time``) of shape (N,);
- ``.csv`` with one header row and one numeric row per point; the column named ``t`` or ``time``
  (any case) is the time label, every other column a feature;
- ``.h5ad`` (AnnData, single-cell data; read only, through the optional ``anndata`` package): the
  obs column ``time_key`` is the time label, the features are X, an obsm embedding or a number of
  principal components of X (``embedding``), see :mod:`flowmatch.data.anndata_io`.

Times are any finite real numbers in the data's own units (days, hours, ...); the distinct values,
sorted, are the time points. The built-in name ``bifurcation`` is the synthetic course of
:func:`bifurcation_course`.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_nonnegative_float, check_positive_int
from flowmatch.data.anndata_io import H5AD_SUFFIX, read_h5ad_snapshots

__all__ = [
    "Snapshots",
    "load_snapshots",
    "save_snapshots",
    "bifurcation_course",
    "bifurcation_drift",
    "simulate",
    "SNAPSHOT_COURSES",
    "TIME_COLUMNS",
]

#: Accepted names of the time column (.csv, case-insensitive) or array (.npz).
TIME_COLUMNS = ("t", "time")


@dataclass(frozen=True)
class Snapshots:
    """Populations observed at sorted distinct times.

    Attributes:
        times: (K,) float64, strictly increasing, K >= 2.
        populations: K float32 tensors (N_k, D), N_k >= 1, the points observed at ``times[k]``.
        name: where the data came from (a built-in name or a file path).
    """

    times: Tensor
    populations: tuple[Tensor, ...]
    name: str = "snapshots"

    def __post_init__(self) -> None:
        if self.times.dim() != 1 or self.times.shape[0] != len(self.populations):
            raise ValueError(
                f"snapshots need one population per time, got {self.times.shape[0]} times "
                f"and {len(self.populations)} populations"
            )
        if len(self.populations) < 2:
            raise ValueError(f"snapshot data needs at least 2 distinct time points, got {len(self.populations)}")
        if not bool(torch.all(self.times[1:] > self.times[:-1])):
            raise ValueError(f"snapshot times must be strictly increasing, got {self.times.tolist()}")
        dims = {tuple(p.shape[1:]) for p in self.populations}
        if len(dims) != 1 or any(p.dim() != 2 or p.shape[0] == 0 for p in self.populations):
            raise ValueError(
                f"every population must be a non-empty (N_k, D) tensor of one D, got shapes "
                f"{[tuple(p.shape) for p in self.populations]}"
            )

    @classmethod
    def from_labelled(cls, x: Tensor | np.ndarray, t: Tensor | np.ndarray, *, name: str = "snapshots") -> Snapshots:
        """Group the rows of ``x`` (N, D) by their time label ``t`` (N,) (equal labels, one time point)."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu()
        t = torch.as_tensor(np.asarray(t) if not isinstance(t, Tensor) else t).detach().cpu()
        if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"snapshot samples x must be a non-empty (N, D) array, got shape {tuple(x.shape)}")
        if t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"time labels t must have shape (N,) = ({x.shape[0]},), got {tuple(t.shape)}")
        if x.is_complex() or t.is_complex() or x.dtype == torch.bool or t.dtype == torch.bool:
            raise ValueError(f"snapshot x and t must be real numbers, got dtypes {x.dtype} and {t.dtype}")
        x = x.to(torch.float32)
        t = t.to(torch.float64)
        for what, v in (("x", x), ("t", t)):
            if not bool(torch.isfinite(v).all()):
                raise ValueError(
                    f"snapshot {what} must be finite, got {int((~torch.isfinite(v)).sum())} NaN/Inf value(s)"
                )
        times, inverse = torch.unique(t, sorted=True, return_inverse=True)
        if times.shape[0] < 2:
            raise ValueError(
                f"snapshot data needs at least 2 distinct time points, got {times.shape[0]} ({times.tolist()})"
            )
        pops = tuple(x[inverse == k].contiguous() for k in range(times.shape[0]))
        return cls(times, pops, name)

    @property
    def dim(self) -> int:
        return int(self.populations[0].shape[1])

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(p.shape[0]) for p in self.populations)

    def __len__(self) -> int:
        return len(self.populations)

    def check_index(self, index: int, *, intermediate: bool = False, what: str = "time index") -> int:
        """``index`` as an int in [0, K) (``intermediate``: in [1, K-2], neither endpoint)."""
        k = len(self)
        lo, hi = (1, k - 2) if intermediate else (0, k - 1)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not lo <= int(index) <= hi:
            rule = (
                f"an intermediate time point, 1 <= {what} <= {k - 2} (neither the first nor the last of {k})"
                if intermediate
                else f"0 <= {what} <= {k - 1}"
            )
            raise ValueError(f"{what} must be {rule}, got {index!r}")
        return int(index)

    def without(self, index: int) -> Snapshots:
        """The course with time point ``index`` removed (for leave-one-out training)."""
        k = self.check_index(index)
        keep = [i for i in range(len(self)) if i != k]
        return Snapshots(self.times[keep], tuple(self.populations[i] for i in keep), self.name)

    def to_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x (N, D) float32, t (N,) float64)``, the populations stacked in time order."""
        x = torch.cat(self.populations).numpy()
        t = torch.repeat_interleave(self.times, torch.tensor(self.sizes)).numpy()
        return x, t


# ------------------------------------------------------------------------------------- files


def _time_key(names: Sequence[str], what: str, path: Path) -> int:
    found = [i for i, n in enumerate(names) if n.strip().lower() in TIME_COLUMNS]
    if len(found) != 1:
        raise ValueError(
            f"snapshot {what} {str(path)!r} must have exactly one time column named 't' or 'time', got {list(names)}"
        )
    return found[0]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "x" not in names:
                raise ValueError(f"snapshot npz {str(path)!r} must hold an array 'x' (N, D), got arrays {names}")
            tkey = names[_time_key(names, "npz", path)]
            return np.asarray(archive["x"]), np.asarray(archive[tkey])
    except (zipfile.BadZipFile, OSError, EOFError, AttributeError) as err:
        raise ValueError(f"malformed snapshot npz {str(path)!r}: {' '.join(str(err).split())}") from None


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    except UnicodeDecodeError as err:
        raise ValueError(f"malformed snapshot csv {str(path)!r}: not UTF-8 text ({err.reason})") from None
    if not lines:
        raise ValueError(f"snapshot csv {str(path)!r} must have a header row, got an empty file")
    header = [h.strip() for h in lines[0].split(",")]
    tcol = _time_key(header, "csv", path)
    rows = []
    for no, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(header):
            raise ValueError(
                f"malformed snapshot csv {str(path)!r}: line {no} has {len(fields)} fields, expected {len(header)}"
            )
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise ValueError(
                f"malformed snapshot csv {str(path)!r}: line {no} holds a field that is not a number: {line.strip()!r}"
            ) from None
    if len(header) < 2:
        raise ValueError(f"snapshot csv {str(path)!r} needs a time column and at least 1 feature column, got {header}")
    arr = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))
    return np.delete(arr, tcol, axis=1), arr[:, tcol]


def load_snapshots(
    spec: str | os.PathLike[str], *, seed: int = 0, time_key: str | None = None, embedding: str | int | None = None
) -> Snapshots:
    """A built-in course (``bifurcation``, drawn with ``seed``) or a ``.npz`` / ``.csv`` / ``.h5ad``
    snapshot file (module docstring; ``time_key`` and ``embedding`` are the .h5ad file's obs column
    of times and its features, the PCA of ``embedding = n`` seeded with ``seed``). Raises ValueError
    naming the rule and the value for bad files."""
    text = os.fspath(spec)
    path = Path(text)
    h5ad = path.suffix.lower() == H5AD_SUFFIX
    for name, value in (("time_key", time_key), ("embedding", embedding)):
        if value is not None and not h5ad:
            raise ValueError(f"{name} applies to .h5ad snapshot files, got {name} {value!r} with snapshots {text!r}")
    if text in SNAPSHOT_COURSES:
        return SNAPSHOT_COURSES[text](seed=seed)
    if not path.is_file():
        raise ValueError(
            f"snapshots must be a built-in course ({', '.join(SNAPSHOT_COURSES)}) or an existing "
            f".npz/.csv/.h5ad file, got {text!r}"
        )
    ext = path.suffix.lower()
    if ext == ".npz":
        x, t = _read_npz(path)
    elif ext == ".csv":
        x, t = _read_csv(path)
    elif h5ad:
        x, t = read_h5ad_snapshots(path, time_key=time_key, embedding=embedding, seed=seed)
    else:
        raise ValueError(f"snapshot file extension must be .npz, .csv or .h5ad, got {ext or '(none)'!r} for {text!r}")
    return Snapshots.from_labelled(x, t, name=text)


def save_snapshots(snapshots: Snapshots, path: str | os.PathLike[str]) -> Path:
    """Write ``snapshots`` as ``.npz`` (arrays ``x``, ``t``) or ``.csv`` (header ``x1..xD,t``)."""
    dest = Path(path)
    x, t = snapshots.to_arrays()
    if dest.suffix.lower() == ".npz":
        np.savez(dest, x=x, t=t)
    elif dest.suffix.lower() == ".csv":
        header = ",".join([f"x{i + 1}" for i in range(x.shape[1])] + ["t"])
        body = "\n".join(",".join(repr(float(v)) for v in row) + f",{float(tt)!r}" for row, tt in zip(x, t))
        dest.write_text(header + "\n" + body + "\n")
    else:
        raise ValueError(f"snapshot file extension must be .npz or .csv, got {dest.suffix or '(none)'!r}")
    return dest


# ----------------------------------------------------------------------- synthetic course


def bifurcation_drift(
    x: Tensor,
    t: Tensor | float | None = None,
    *,
    radius: float = 2.0,
    omega: float = math.pi / 4,
    rate: float = 1.5,
    split: float = 1.0,
) -> Tensor:
    """Drift f(x) of the synthetic course in the plane of the first two coordinates (others: 0).

    In polar coordinates (r, theta) the cells turn at the constant angular speed ``omega``
    (theta' = omega: the paths are arcs, a half turn over 4 time units) while their radius
    undergoes a pitchfork bifurcation around ``radius``: with z = r - radius,
    z' = rate z (1 - z^2 / split^2), so z = 0 is unstable and the population splits into an inner
    branch (r -> radius - split) and an outer one (r -> radius + split). In Cartesian coordinates

        f(x) = omega (-x_2, x_1) + rate z (1 - z^2 / split^2) (x_1, x_2) / r.

    The drift does not depend on t (autonomous); ``t`` is accepted so that f is a velocity model.
    """
    xy = x[..., :2]
    r = xy.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    z = r - radius
    rot = omega * torch.stack([-xy[..., 1], xy[..., 0]], dim=-1)
    radial = rate * z * (1 - (z / split) ** 2) * xy / r
    out = torch.zeros_like(x)
    out[..., :2] = rot + radial
    return out


def simulate(
    x0: Tensor,
    times: Sequence[float],
    drift: Callable[[Tensor, Tensor], Tensor],
    *,
    noise: float = 0.0,
    steps_per_unit: int = 200,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """Euler-Maruyama for dX = drift(X, t) dt + noise dW from X(times[0]) = x0; the states at ``times``.

    Each interval [t_k, t_{k+1}] is cut into ceil(steps_per_unit (t_{k+1} - t_k)) equal steps,
    X <- X + h drift(X, t) + noise sqrt(h) Z with Z ~ N(0, I) from ``generator``.
    """
    noise = check_nonnegative_float("noise", noise)
    steps_per_unit = check_positive_int("steps_per_unit", steps_per_unit)
    ts = [float(v) for v in times]
    x = x0.clone()
    out = [x.clone()]
    for a, b in zip(ts[:-1], ts[1:]):
        n = max(1, math.ceil(steps_per_unit * (b - a)))
        h = (b - a) / n
        for i in range(n):
            tt = torch.full((x.shape[0],), a + i * h, dtype=x.dtype)
            x = x + h * drift(x, tt)
            if noise > 0:
                x = x + noise * math.sqrt(h) * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        out.append(x.clone())
    return out


def bifurcation_course(
    n: int = 1000,
    *,
    times: Sequence[float] = (0, 1, 2, 3, 4),
    dim: int = 2,
    noise: float = 0.2,
    seed: int = 0,
    steps_per_unit: int = 200,
) -> Snapshots:
    """The built-in synthetic time course ``bifurcation``: n cells per time point, known dynamics.

    Start population (t = 0): angle theta ~ pi/2 + N(0, 0.25^2) on the circle of radius 2, radius
    offset N(0, 0.1^2) (extra coordinates, ``dim > 2``: N(0, 0.3^2), driven only by the noise).
    The cells follow dX = f(X) dt + noise dW with f = :func:`bifurcation_drift` (a quarter turn
    every 2 time units while the radius bifurcates into two branches at 1 and 3), simulated by
    Euler-Maruyama with ``steps_per_unit`` steps per time unit. Every time point observes its own
    n cells (measurement is destructive: K n cells are simulated and cell i is observed only at time
    point i mod K), so the populations of different times are independent samples. Deterministic
    in ``seed``. Between t_{k-1} and t_{k+1} the cells turn by pi/2, so the straight chord between
    matched cells passes at 0.71 of the arc's radius at t_k: a straight-line interpolation is
    visibly wrong at every intermediate time.
    """
    n = check_positive_int("n", n)
    dim = check_positive_int("dim", dim)
    if dim < 2:
        raise ValueError(f"the bifurcation course needs dim >= 2, got {dim}")
    ts = [float(v) for v in times]
    g = torch.Generator().manual_seed(int(seed))
    k = len(ts)
    m = n * k
    theta = math.pi / 2 + 0.25 * torch.randn(m, generator=g, dtype=torch.float64)
    r = 2.0 + 0.1 * torch.randn(m, generator=g, dtype=torch.float64)
    x0 = torch.zeros(m, dim, dtype=torch.float64)
    x0[:, 0], x0[:, 1] = r * torch.cos(theta), r * torch.sin(theta)
    if dim > 2:
        x0[:, 2:] = 0.3 * torch.randn(m, dim - 2, generator=g, dtype=torch.float64)
    states = simulate(x0, ts, bifurcation_drift, noise=noise, steps_per_unit=steps_per_unit, generator=g)
    pops = tuple(states[i][i::k][:n].to(torch.float32) for i in range(k))
    return Snapshots(torch.tensor(ts, dtype=torch.float64), pops, "bifurcation")


#: Built-in courses by name: ``name -> builder(seed=...)``.
SNAPSHOT_COURSES: dict[str, Callable[..., Snapshots]] = {"bifurcation": bifurcation_course}
