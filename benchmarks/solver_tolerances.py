"""How far torchdiffeq's adaptive solvers miss their tolerances, against SciPy's ``solve_ivp``.

Prints, per problem and tolerance (rtol = atol = tol), the end-point error divided by
atol + rtol |x| (1 = exactly at the tolerance) and the number of function evaluations, for
dopri5, bosh3, adaptive_heun, dopri8 (through ``flowmatch.sample``) and SciPy's RK23, RK45,
DOP853, in float64 on dx/dt = A x (A = [[-0.5, 2], [-2, -0.5]], exact solution expm(A) x0) and a
smooth nonlinear 2D ODE (reference: DOP853 at 1e-13), t in [0, 1].

    python benchmarks/solver_tolerances.py

Its output is in docs/solver_tolerances.md; it is why ``sample`` warns for bosh3 and dopri8.
"""

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from flowmatch.sampling import sample

torch.set_default_dtype(torch.float64)
A = np.array([[-0.5, 2.0], [-2.0, -0.5]])


def lin_np(t, x):
    return A @ x


At = torch.tensor(A)


def lin_model(x, t, cond=None):
    return x @ At.T


def nl_np(t, x):
    return np.array([np.sin(3 * t) * x[1] - 0.3 * x[0], -x[0] * np.cos(x[1]) + np.tanh(x[0])])


def nl_model(x, t, cond=None):
    return torch.stack(
        [torch.sin(3 * t) * x[:, 1] - 0.3 * x[:, 0], -x[:, 0] * torch.cos(x[:, 1]) + torch.tanh(x[:, 0])], 1
    )


x0 = np.array([1.0, 0.5])
problems = {
    "linear": (lin_np, lin_model, expm(A * 1.0) @ x0),
    "nonlinear": (nl_np, nl_model, solve_ivp(nl_np, (0, 1), x0, method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]),
}
print(
    f"{'problem':10s} {'tol':>6s} "
    + " ".join(f"{s:>14s}" for s in ["dopri5", "bosh3", "adaptive_heun", "dopri8", "sp:RK23", "sp:RK45", "sp:DOP853"])
)
for pname, (fnp, fm, ref) in problems.items():
    for tol in (1e-3, 1e-5, 1e-7, 1e-9):
        row = []
        scale = tol + tol * np.abs(ref)
        for s in ["dopri5", "bosh3", "adaptive_heun", "dopri8"]:
            r = sample(fm, torch.tensor(x0)[None], solver=s, rtol=tol, atol=tol)
            row.append(f"{np.max(np.abs(r.x[0].numpy() - ref) / scale):8.3g}/{r.nfe:<5d}")
        for s in ["RK23", "RK45", "DOP853"]:
            sol = solve_ivp(fnp, (0, 1), x0, method=s, rtol=tol, atol=tol)
            row.append(f"{np.max(np.abs(sol.y[:, -1] - ref) / scale):8.3g}/{sol.nfev:<5d}")
        print(f"{pname:10s} {tol:6.0e} " + " ".join(row))
