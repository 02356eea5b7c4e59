"""The Schrödinger bridge between two Gaussians in closed form: marginals, velocity and score.

Reference process: Brownian motion sigma W_t (variance sigma^2 t per coordinate). The Schrödinger
bridge (SB) from q0 = N(m0, S0) to q1 = N(m1, S1) is a Gaussian process (Bunne et al., "The
Schrödinger Bridge between Gaussian Measures has a Closed Form", AISTATS 2023, Theorem 3):

    (X0, X1) ~ the entropic OT plan for the cost ||x0 - x1||^2 with epsilon = 2 sigma^2, i.e. the
    Gaussian coupling with cross-covariance Cov(X0, X1) = C_sigma,

        D_sigma = (4 S0^{1/2} S1 S0^{1/2} + sigma^4 I)^{1/2},
        C_sigma = (S0^{1/2} D_sigma S0^{-1/2} - sigma^2 I) / 2
                = 2 S0 S1 S0^{1/2} (D_sigma + sigma^2 I)^{-1} S0^{-1/2}   (computed so: no cancellation),

    and, given the endpoints, X_t is the Brownian bridge (1 - t) X0 + t X1 + sigma sqrt(t(1-t)) Z.

So the marginal at time t is N(mu_t, Sigma_t) with

    mu_t    = (1 - t) m0 + t m1,
    Sigma_t = (1 - t)^2 S0 + t^2 S1 + t (1 - t) (C_sigma + C_sigma^T + sigma^2 I).

C_sigma is the Gaussian solution of the Schrödinger system: the joint density of (X0, X1) has the
cross term exp(x0 . x1 / sigma^2) of the reference kernel exp(-||x0 - x1||^2 / (2 sigma^2)), which
for a Gaussian coupling reads  sigma^2 C S1^{-1} = S0 - C S1^{-1} C^T  (checked in the tests).
Limits: sigma -> 0 gives C = S0^{1/2} (S0^{1/2} S1 S0^{1/2})^{1/2} S0^{-1/2}, the cross-covariance
of the OT map, and Sigma_t becomes McCann's displacement interpolation; sigma -> infinity gives
C -> 0 (the independent coupling). For S0 = S1 = I: Sigma_t = (1 + t(1-t)(sqrt(4 + sigma^4) - 2)) I.

Fields (this module's additions; they follow from the conditional-flow-matching identities of
Tong et al. TMLR 2024, Theorem 3.1, and [SF]2M, Tong et al. AISTATS 2024, Section 3):

    probability-flow velocity  v_t(x) = E[u_t | x_t = x] = (m1 - m0) + M_t Sigma_t^{-1} (x - mu_t),
        M_t = Cov(u_t, x_t) = t S1 - (1 - t) S0 + (1 - t) C^T - t C + sigma^2 (1 - 2t) / 2 I,
        with u_t = x1 - x0 + (1 - 2t) / (2 t (1 - t)) (x_t - mu_t(x0, x1)) the Brownian-bridge
        conditional velocity (M_t + M_t^T = d Sigma_t / dt: the continuity equation holds);
    score                      s_t(x) = grad log p_t(x) = -Sigma_t^{-1} (x - mu_t);
    SB SDE drift               v_t(x) + (sigma^2 / 2) s_t(x)   (diffusion sigma).

All arithmetic is float64; :meth:`GaussianBridge.as_model` wraps velocity and score as an
``nn.Module`` (``forward`` = velocity, ``.score``) usable by :func:`flowmatch.sample` and
:func:`flowmatch.sample_sde` as an exact oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_nonnegative_float

__all__ = ["GaussianMarginal", "GaussianBridge", "GaussianBridgeModel", "gaussian_bridge", "sqrtm_psd"]


def sqrtm_psd(a: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (d, d), by eigh."""
    a = 0.5 * (a + a.transpose(-1, -2))
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp_min(0.0).sqrt().unsqueeze(-2)) @ v.transpose(-1, -2)


def _as_vector(name: str, x: Any) -> Tensor:
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.dim() != 1 or t.shape[0] == 0 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be a finite vector of shape (d,), got shape {tuple(t.shape)}")
    return t


def _as_spd(name: str, x: Any, d: int) -> Tensor:
    a = torch.as_tensor(x, dtype=torch.float64)
    if a.shape != (d, d) or not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} must be a finite ({d}, {d}) matrix, got shape {tuple(a.shape)}")
    if not torch.allclose(a, a.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric, got max |A - A^T| = {float((a - a.T).abs().max()):.3g}")
    lo = float(torch.linalg.eigvalsh(a).min())
    if not lo > 0:
        raise ValueError(f"{name} must be positive definite, got smallest eigenvalue {lo:.3g}")
    return a


@dataclass(frozen=True)
class GaussianMarginal:
    """N(mean, cov): mean (d,), cov (d, d), float64."""

    mean: Tensor
    cov: Tensor


class GaussianBridge:
    """Schrödinger bridge between N(m0, S0) and N(m1, S1) for the reference sigma W (see module doc).

    Args:
        m0: mean of the source, shape (d,).
        m1: mean of the target, shape (d,).
        S0: covariance of the source, symmetric positive definite, shape (d, d).
        S1: covariance of the target, symmetric positive definite, shape (d, d).
        sigma: diffusion of the reference Brownian motion (>= 0; 0 is the OT limit).

    Example:
        >>> import torch
        >>> from flowmatch.trajectory.gaussian_bridge import GaussianBridge
        >>> gb = GaussianBridge(torch.zeros(1), torch.eye(1), torch.zeros(1), torch.eye(1), sigma=1.0)
        >>> round(float(gb.cov(0.5)[0, 0]), 4)   # 1 + (sqrt(5) - 2) / 4
        1.059
    """

    def __init__(self, m0: Any, S0: Any, m1: Any, S1: Any, sigma: float):
        self.m0 = _as_vector("m0", m0)
        d = self.m0.shape[0]
        self.m1 = _as_vector("m1", m1)
        if self.m1.shape != (d,):
            raise ValueError(f"m1 must have the shape of m0 ({d},), got {tuple(self.m1.shape)}")
        self.S0 = _as_spd("S0", S0, d)
        self.S1 = _as_spd("S1", S1, d)
        self.sigma = check_nonnegative_float("sigma", sigma)
        self.dim = d
        eye = torch.eye(d, dtype=torch.float64)
        r0 = sqrtm_psd(self.S0)
        r0_inv = torch.linalg.inv(r0)
        s2 = self.sigma**2
        dmat = sqrtm_psd(4.0 * r0 @ self.S1 @ r0 + s2**2 * eye)
        # C = (r0 D r0^{-1} - sigma^2 I) / 2 = r0 (D - sigma^2 I) r0^{-1} / 2, and since D^2 - sigma^4 I
        # = 4 r0 S1 r0 commutes with D, D - sigma^2 I = 4 r0 S1 r0 (D + sigma^2 I)^{-1}: the form below
        # has no cancellation between D and sigma^2 I (exact to round-off for sigma up to 1e3 and more).
        #: Cov(X0, X1) of the static bridge (entropic OT plan with epsilon = 2 sigma^2).
        self.C = 2.0 * self.S0 @ self.S1 @ r0 @ torch.linalg.solve(dmat + s2 * eye, r0_inv)
        self._eye = eye

    # ------------------------------------------------------------------ marginals
    def mean(self, t: float | Tensor) -> Tensor:
        """mu_t = (1 - t) m0 + t m1: (d,) for a float t, (B, d) for t of shape (B,)."""
        tt = torch.as_tensor(t, dtype=torch.float64)
        return (1 - tt)[..., None] * self.m0 + tt[..., None] * self.m1

    def cov(self, t: float | Tensor) -> Tensor:
        """Sigma_t = (1-t)^2 S0 + t^2 S1 + t(1-t)(C + C^T + sigma^2 I): (d, d), or (B, d, d)."""
        tt = torch.as_tensor(t, dtype=torch.float64)[..., None, None]
        cross = self.C + self.C.T + self.sigma**2 * self._eye
        return (1 - tt) ** 2 * self.S0 + tt**2 * self.S1 + tt * (1 - tt) * cross

    def marginal(self, t: float) -> GaussianMarginal:
        """The SB marginal N(mu_t, Sigma_t) at time t in [0, 1]."""
        t = float(t)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"t must lie in [0, 1], got {t!r}")
        return GaussianMarginal(self.mean(t), self.cov(t))

    def cov_flow(self, t: float | Tensor) -> Tensor:
        """M_t = Cov(u_t, x_t) (see module doc); M_t + M_t^T = d Sigma_t / dt."""
        tt = torch.as_tensor(t, dtype=torch.float64)[..., None, None]
        return (
            tt * self.S1
            - (1 - tt) * self.S0
            + (1 - tt) * self.C.T
            - tt * self.C
            + self.sigma**2 * (1 - 2 * tt) / 2 * self._eye
        )

    # ------------------------------------------------------------------ fields
    def _centered(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        x64 = x.to(torch.float64).reshape(x.shape[0], self.dim)
        t64 = t.to(torch.float64).reshape(-1).expand(x.shape[0])
        return x64 - self.mean(t64), t64

    def _precision_times(self, xc: Tensor, t64: Tensor) -> Tensor:
        """Sigma_t^{-1} (x - mu_t), shape (B, d); one d x d solve when every t is the same."""
        if bool((t64 == t64[0]).all()):
            return torch.linalg.solve(self.cov(t64[0]), xc.T).T
        return torch.linalg.solve(self.cov(t64), xc.unsqueeze(-1)).squeeze(-1)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Probability-flow velocity v_t(x) = (m1 - m0) + M_t Sigma_t^{-1} (x - mu_t); x (B, d), t (B,)."""
        xc, t64 = self._centered(x, t)
        w = self._precision_times(xc, t64)
        if bool((t64 == t64[0]).all()):
            v = (self.m1 - self.m0) + w @ self.cov_flow(t64[0]).T
        else:
            v = (self.m1 - self.m0) + (self.cov_flow(t64) @ w.unsqueeze(-1)).squeeze(-1)
        return v.to(x.dtype)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """Score of the marginal, grad log p_t(x) = -Sigma_t^{-1} (x - mu_t); x (B, d), t (B,)."""
        xc, t64 = self._centered(x, t)
        return (-self._precision_times(xc, t64)).to(x.dtype)

    def sde_drift(self, x: Tensor, t: Tensor) -> Tensor:
        """Drift of the SB SDE, v_t(x) + (sigma^2 / 2) s_t(x) (its diffusion is sigma)."""
        return self.velocity(x, t) + 0.5 * self.sigma**2 * self.score(x, t)

    def as_model(self) -> GaussianBridgeModel:
        """An nn.Module oracle: ``forward(x, t, cond=None)`` = velocity, ``.score(x, t, cond=None)``."""
        return GaussianBridgeModel(self)

    def __repr__(self) -> str:
        return f"GaussianBridge(dim={self.dim}, sigma={self.sigma!r})"


class GaussianBridgeModel(nn.Module):
    """The closed-form SB velocity and score as a model (same interface as FlowAndScore)."""

    def __init__(self, bridge: GaussianBridge):
        super().__init__()
        self.bridge = bridge

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.bridge.velocity(x, t)

    def score(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.bridge.score(x, t)


def gaussian_bridge(m0: Any, S0: Any, m1: Any, S1: Any, sigma: float, t: float) -> GaussianMarginal:
    """Marginal N(mu_t, Sigma_t) at time t of the Schrödinger bridge N(m0, S0) -> N(m1, S1) with
    reference sigma W (Bunne et al. AISTATS 2023, Theorem 3); see :class:`GaussianBridge`."""
    return GaussianBridge(m0, S0, m1, S1, sigma).marginal(t)
