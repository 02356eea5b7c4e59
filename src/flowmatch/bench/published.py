"""Published numbers that the benchmarks print beside ours, with their source.

Only data lives here (transcribed from /work/shared/REFERENCES.md); no code depends on how a
number was obtained beyond the fields of :class:`Published`.

2D benchmark (``flowmatch bench paper2d``):

- ``SF2M_TABLE2``: Tong, Malkin, Fatras, Atanackovic, Zhang, Huguet, Wolf, Bengio,
  "Simulation-Free Schrödinger Bridges via Score and Flow Matching", AISTATS 2024, Table 2
  (re-run of Tong et al. TMLR 2024, Table 2): mean ± std over 5 seeds, 10k test points, Euler
  100 steps, W2 exact (POT emd2) and NPE.
- ``TMLR_TABLE2_NPE``: Tong et al., "Improving and Generalizing Flow-Based Generative Models with
  Minibatch Optimal Transport", TMLR 2024, Table 2, NPE column (secondary: read from third-party
  notes of the paper, not from the PDF; about 1k test points).
- ``TMLR_TABLED1_WALLCLOCK_S``: TMLR 2024, Table D.1, wall-clock seconds to convergence on the 2D
  tasks (secondary).

Row names are the papers' (``OT-CFM``, ``I-CFM``, ``RF``, ``FM``, ``SB-CFM``, ``[SF]2M-Exact``);
:data:`PAPER_ROW` maps flowmatch bench methods to them. The papers' RF row is mapped to our
2-rectified flow (``2-rf``): its NPE (0.04 to 0.2) is far below I-CFM's (0.2 to 2.7), which only a
reflowed model reaches (a 1-rectified flow is I-CFM with sigma = 0 and has I-CFM's path energy).
This is our reading; the papers do not spell out the number of reflows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Published",
    "SF2M_TABLE2",
    "TMLR_TABLE2_NPE",
    "TMLR_TABLED1_WALLCLOCK_S",
    "PAPER_ROW",
    "PAPER2D_TASKS",
    "published_2d",
]


@dataclass(frozen=True)
class Published:
    """One published figure: mean, std (None when not given) and where it comes from."""

    mean: float
    std: float | None
    source: str
    secondary: bool = False

    def format(self, digits: int = 3) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f}±{self.std:.{digits}f}"


SF2M = "Tong et al. AISTATS 2024 ([SF]2M), Table 2"
TMLR = "Tong et al. TMLR 2024, Table 2"

#: The four tasks, in the papers' column order: (source, target) as named in the tables.
PAPER2D_TASKS = ("N→8gaussians", "moons→8gaussians", "N→moons", "N→scurve")

# (mean, std) per task in PAPER2D_TASKS order; None where the paper has no entry ("—").
_SF2M_W2: dict[str, list[tuple[float, float] | None]] = {
    "OT-CFM": [(0.303, 0.043), (0.601, 0.027), (0.130, 0.016), (0.144, 0.028)],
    "I-CFM": [(0.373, 0.103), (1.557, 0.407), (0.178, 0.014), (0.242, 0.141)],
    "RF": [(0.421, 0.071), (1.525, 0.330), (0.283, 0.045), (0.345, 0.079)],
    "FM": [(0.343, 0.058), None, (0.209, 0.055), (0.198, 0.037)],
    "SB-CFM": [(2.314, 2.112), None, (0.434, 0.594), (0.341, 0.468)],
    "[SF]2M-Exact": [(0.275, 0.058), (0.726, 0.137), (0.124, 0.023), (0.128, 0.005)],
}
_SF2M_NPE: dict[str, list[tuple[float, float] | None]] = {
    "OT-CFM": [(0.031, 0.027), (0.015, 0.010), (0.083, 0.009), (0.027, 0.012)],
    "I-CFM": [(0.202, 0.055), (2.680, 0.292), (0.891, 0.120), (0.856, 0.031)],
    "RF": [(0.044, 0.031), (0.203, 0.090), (0.130, 0.078), (0.099, 0.066)],
    "FM": [(0.190, 0.054), None, (0.762, 0.099), (0.743, 0.116)],
    "SB-CFM": [(1.000, 0.000), None, (0.995, 0.000), (0.745, 0.039)],
    "[SF]2M-Exact": [(0.016, 0.012), (0.045, 0.031), (0.053, 0.038), (0.034, 0.024)],
}


def _build() -> dict[tuple[str, str], dict[str, Published]]:
    out: dict[tuple[str, str], dict[str, Published]] = {}
    for metric, table in (("w2", _SF2M_W2), ("npe", _SF2M_NPE)):
        for row, cells in table.items():
            for task, cell in zip(PAPER2D_TASKS, cells):
                if cell is not None:
                    out.setdefault((row, task), {})[metric] = Published(cell[0], cell[1], SF2M)
    return out


#: ``(paper row, task) -> {"w2": Published, "npe": Published}`` ([SF]2M Table 2).
SF2M_TABLE2: dict[tuple[str, str], dict[str, Published]] = _build()

#: ``(paper row, task) -> Published`` NPE of TMLR 2024 Table 2 (secondary, no std).
TMLR_TABLE2_NPE: dict[tuple[str, str], Published] = {
    ("OT-CFM", "N→8gaussians"): Published(0.018, None, TMLR, secondary=True),
    ("OT-CFM", "moons→8gaussians"): Published(0.053, None, TMLR, secondary=True),
    ("I-CFM", "N→8gaussians"): Published(0.222, None, TMLR, secondary=True),
    ("I-CFM", "moons→8gaussians"): Published(2.738, None, TMLR, secondary=True),
}

#: Wall-clock seconds to convergence on the 2D tasks, TMLR 2024 Table D.1 (secondary).
TMLR_TABLED1_WALLCLOCK_S: dict[str, float] = {"OT-CFM": 1.48e3, "I-CFM": 1.05e3, "FM": 1.01e3}

#: flowmatch bench method -> the papers' row name (methods absent here have no published row).
PAPER_ROW: dict[str, str] = {"ot-cfm": "OT-CFM", "i-cfm": "I-CFM", "fm": "FM", "sb-cfm": "SB-CFM", "2-rf": "RF"}


def published_2d(method: str, task: str, metric: str) -> Published | None:
    """The [SF]2M Table 2 value of ``metric`` ("w2" or "npe") for a bench method and a task
    label of :data:`PAPER2D_TASKS`; None when the paper has no such entry."""
    row = PAPER_ROW.get(method)
    if row is None:
        return None
    return SF2M_TABLE2.get((row, task), {}).get(metric)
