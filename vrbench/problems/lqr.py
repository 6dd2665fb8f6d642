"""Linear-quadratic regulators under a linear Gaussian policy, with exact gradients.

The state follows known linear dynamics with Gaussian noise and the policy is linear with
Gaussian exploration, so the return is a quadratic function of Gaussian noise: its expectation
and gradient come from Lyapunov-type recursions, and both the score-function policy gradient
and the pathwise gradient through the dynamics (backpropagation through time) apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import device_cached
from vrbench.problems import register
from vrbench.problems.base import (
    DTYPE,
    MAX_HORIZON,
    MAX_MAGNITUDE,
    Capability,
    Problem,
    asymmetric_theta,
    check_magnitude,
    check_scale,
    check_size,
)


class LinearSystem(NamedTuple):
    """``x' = A x + B u + w``, ``w ~ N(0, W)``, ``x_0 ~ N(m_0, S_0)``; cost ``xᵀQx + uᵀRu``.

    ``W`` and ``S_0`` are given by Cholesky factors, so that noise maps to states linearly."""

    A: Tensor  # (n, n)
    B: Tensor  # (n, m)
    Q: Tensor  # (n, n)
    R: Tensor  # (m, m)
    noise_factor: Tensor  # (n, n), W = noise_factor noise_factorᵀ
    initial_mean: Tensor  # (n,)
    initial_factor: Tensor  # (n, n), S_0 = initial_factor initial_factorᵀ


class QuadraticValues(NamedTuple):
    """The exact cost-to-go ``V_t(x) = xᵀ P_t x + c_t`` for ``t = 0..H`` (``V_H = 0``)."""

    P: Tensor  # (H + 1, n, n)
    c: Tensor  # (H + 1,)


@dataclass(frozen=True)
class LinearQuadraticRegulator(Problem):
    """Finite-horizon LQR with the policy ``u_t = −K x_t + σ ε_t``, ``ε_t ~ N(0, I_m)``.

    Dynamics ``x_{t+1} = A x_t + B u_t + w_t``, ``w_t ~ N(0, W)``, ``x_0 ~ N(m_0, S_0)``; the
    objective is the expected discounted cost ``J = E Σ_{t<H} γ^t (x_tᵀQx_t + u_tᵀRu_t)``,
    minimized. ``θ = (vec K, log σ)`` (K row-major): log σ keeps σ positive under any gradient
    step, as in the Gaussian policies of policy-gradient practice, and makes its score
    ``|ε_t|² − m`` free of units. A sample is the trajectory ``(x_t, u_t)_{t<H}``, shape
    ``(H, n + m)``; the noise ``(z_t, ε_t)_{t<H}`` has the same shape, ``z_0`` drawing
    ``x_0`` and ``z_t`` (t ≥ 1) the process noise that enters ``x_t``.

    **Exact J.** With ``L = A − BK``, ``Q_K = Q + KᵀRK`` and ``N = σ² B Bᵀ + W``, the cost-to-go
    is ``V_t(x) = xᵀ P_t x + c_t`` with ``P_H = 0``, ``c_H = 0`` and, backwards,
    ``P_t = Q_K + γ Lᵀ P_{t+1} L``, ``c_t = σ² tr R + γ (tr(P_{t+1} N) + c_{t+1})``; then
    ``J = tr(P_0 M_0) + c_0`` with ``M_0 = S_0 + m_0 m_0ᵀ``.

    **Exact gradient.** The second moments ``M_t = E[x_t x_tᵀ]`` follow the Lyapunov recursion
    ``M_{t+1} = L M_t Lᵀ + N``. Differentiating the cost of step t's action with later gains
    held fixed, and summing over t (the gain is shared by all steps),
    ``∇_K J = 2 Σ_{t<H} γ^t E_t M_t`` with ``E_t = (R + γ BᵀP_{t+1}B) K − γ BᵀP_{t+1}A``, and,
    since σ enters only through the noise terms,
    ``∂J/∂log σ = 2σ² Σ_{t<H} γ^t (tr R + γ tr(BᵀP_{t+1}B))``. This is the finite-horizon,
    discounted, noisy form of the policy gradient of Fazel, Ge, Kakade & Mesbahi, "Global
    convergence of policy gradient methods for the linear quadratic regulator", ICML 2018
    (lemma 1: ``∇C(K) = 2 E_K Σ_K`` for the infinite horizon).

    **Scores.** ``∇_K log π(u|x) = −ε xᵀ/σ`` and ``∂ log π/∂log σ = |ε|² − m`` with
    ``ε = (u + Kx)/σ``; :meth:`step_score` weights them per step (reward-to-go, baselines), and
    :meth:`log_prob` is ``Σ_t log π(u_t|x_t)`` (the dynamics' densities are free of θ).
    The state-value baseline is the exact ``V_t`` above.

    Limits: ``H ≤ 10,000`` and, since an unstable closed loop grows the state like
    ``ρ(A − BK)^t``, the root-mean-square state over the horizon at the initial θ must stay
    below ``1e8`` (see :data:`~vrbench.problems.base.MAX_MAGNITUDE`).
    """

    horizon: int = 20
    gamma: float = 0.99
    sigma: float = 0.5
    gain: float = 0.0

    capabilities: ClassVar = frozenset({
        Capability.CONTINUOUS, Capability.DIFFERENTIABLE, Capability.REPARAMETERIZABLE,
        Capability.INVERSE_TRANSFORM, Capability.SEQUENTIAL})
    check_pattern: ClassVar[float] = 0.1
    """Size of the fixed pattern :meth:`check_theta` adds to every entry of K."""

    def __post_init__(self) -> None:
        check_size(self.name, "horizon", self.horizon, high=MAX_HORIZON)
        check(0.0 < self.gamma <= 1.0, self.name, f"gamma={self.gamma} must lie in (0, 1]")
        check_scale(self.name, "sigma", self.sigma)
        check_magnitude(self.name, "gain", self.gain)
        with torch.device("cpu"):
            moments = self._second_moments(self.initial_theta())
        largest = math.sqrt(float(torch.diagonal(moments, dim1=-2, dim2=-1).sum(-1).max()))
        check(largest <= MAX_MAGNITUDE, self.name,
              f"the state grows to a root-mean-square of {largest:.3g} within horizon="
              f"{self.horizon} (at most {MAX_MAGNITUDE:g}, beyond which float64 cannot "
              "resolve the costs): shorten the horizon or raise the gain")

    def system(self) -> LinearSystem:
        raise NotImplementedError

    @device_cached
    def _system(self) -> LinearSystem:
        return self.system()

    @property
    def states(self) -> int:
        return self._system.A.shape[0]

    @property
    def actions(self) -> int:
        return self._system.B.shape[1]

    @property
    def dim(self) -> int:
        return self.actions * self.states + 1

    def initial_theta(self) -> Tensor:
        """``K = gain · Bᵀ`` (feedback against the actuated directions) and ``log σ``."""
        gain = self.gain * self._system.B.T.reshape(-1)
        return torch.cat([gain, torch.full((1,), math.log(self.sigma), dtype=DTYPE)])

    def check_theta(self) -> Tensor:
        """The initial θ with a pattern that differs in every entry of K (log σ unchanged).

        ``K = gain · Bᵀ`` mirrors the system's symmetries: with ``B = I`` and a symmetric A,
        ∇_K J is a symmetric matrix, so a score that transposed K would go unnoticed."""
        theta = self.initial_theta()
        return torch.cat([asymmetric_theta(theta[:-1], self.check_pattern), theta[-1:]])

    def _policy(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """``K`` (``(..., m, n)``) and σ (``(...)``) from θ or a batch of θ."""
        gain = theta[..., :-1].reshape(*theta.shape[:-1], self.actions, self.states)
        return gain, theta[..., -1].exp()

    def sample_width(self) -> int:
        return self.horizon * (self.states + self.actions)

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return self.sample_width()

    def sample_noise(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return torch.randn((*shape, self.horizon, self.states + self.actions),
                           generator=generator, dtype=DTYPE)

    def transform(self, theta: Tensor, noise: Tensor) -> Tensor:
        """Roll the closed loop out over the horizon; ``theta`` may be ``(R, 1, dim)``.

        ``x_{t+1} = (A − BK) x_t + B σ ε_t + w_t`` steps the whole batch at once (one matrix
        product per step); the actions ``u_t = σ ε_t − K x_t`` follow in one product."""
        system = self._system
        n = self.states
        gain, sigma = self._policy(theta)
        if theta.dim() > 1:  # a per-replicate batch (R, 1, dim): one K and σ per replicate
            gain, sigma = gain[..., 0, :, :], sigma[..., None, None]
        exploration = sigma * noise[..., n:]
        drive = (noise[..., 1:, :n] @ system.noise_factor.T
                 + exploration[..., :-1, :] @ system.B.T)
        transition = (system.A - system.B @ gain).mT
        state = system.initial_mean + noise[..., 0, :n] @ system.initial_factor.T
        steps = [state]
        for t in range(self.horizon - 1):  # the horizon loop; the batch steps together
            state = state @ transition + drive[..., t, :]
            steps.append(state)
        states = torch.stack(steps, dim=-2)
        feedback = gain.mT[..., None, :, :] if theta.dim() > 1 else gain.mT
        return torch.cat([states, exploration - states @ feedback], dim=-1)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return self.transform(theta, self.sample_noise(shape, generator))

    def pathwise_gradient(self, theta: Tensor, noise: Tensor) -> Tensor:
        """Backpropagation through time written out: the adjoint recursion, a few products of
        the batch per step instead of autograd's graph of the rollout.

        With ``λ_t = ∂F/∂x_t`` and ``μ_t = ∂F/∂u_t`` of ``F = Σ_t γ^t (x_tᵀQx_t + u_tᵀRu_t)``,
        backwards from ``λ_H = 0``: ``μ_t = γ^t (R + Rᵀ) u_t + Bᵀλ_{t+1}`` and
        ``λ_t = γ^t (Q + Qᵀ) x_t + Aᵀλ_{t+1} − Kᵀμ_t``; then ``∂F/∂K = −Σ_t μ_t x_tᵀ`` and
        ``∂F/∂log σ = Σ_t μ_t·σε_t``, averaged over the n rollouts of each replicate.
        """
        system = self._system
        n = self.states
        gain, sigma = self._policy(theta)
        with torch.no_grad():
            samples = self.transform(theta.detach(), noise)
            states, actions = samples[..., :n], samples[..., n:]
            state_weight, action_weight = system.Q + system.Q.mT, system.R + system.R.mT
            discounts = [self.gamma**t for t in range(self.horizon)]
            adjoint = torch.zeros_like(states[..., 0, :])
            action_adjoints = torch.empty_like(actions)
            for t in range(self.horizon - 1, -1, -1):  # the horizon loop, backwards
                following = adjoint  # λ_{t+1}
                action_adjoint = torch.addmm(following.reshape(-1, n) @ system.B,
                                             actions[..., t, :].reshape(-1, self.actions),
                                             action_weight, alpha=discounts[t]
                                             ).reshape(action_adjoints[..., t, :].shape)
                action_adjoints[..., t, :] = action_adjoint
                adjoint = (torch.addmm(following.reshape(-1, n) @ system.A,
                                       states[..., t, :].reshape(-1, n), state_weight,
                                       alpha=discounts[t]).reshape(following.shape)
                           - action_adjoint @ gain)
            replicates, draws = noise.shape[:2]
            d_gain = -(action_adjoints.reshape(replicates, -1, self.actions).mT
                       @ states.reshape(replicates, -1, n))
            d_log_sigma = sigma * (action_adjoints * noise[..., n:]).sum((1, 2, 3))
            return torch.cat([d_gain.flatten(1), d_log_sigma[:, None]], dim=-1) / draws

    def from_uniforms(self, theta: Tensor, uniforms: Tensor) -> Tensor:
        noise = torch.special.ndtri(uniforms).reshape(
            *uniforms.shape[:-1], self.horizon, self.states + self.actions)
        return self.transform(theta, noise)

    def sample_mean(self, theta: Tensor) -> Tensor:
        """The mean trajectory: the rollout is affine in the noise, so it is the noiseless one."""
        return self.transform(theta, torch.zeros(self.horizon, self.states + self.actions,
                                                 dtype=DTYPE))

    def sample_covariance(self, theta: Tensor) -> Tensor:
        """``G Gᵀ`` with ``G`` the (constant) Jacobian of the affine rollout in the noise, whose
        columns are the rollouts of unit noise vectors less the mean trajectory."""
        width = self.sample_width()
        unit = torch.eye(width, dtype=DTYPE).reshape(width, self.horizon, -1)
        responses = (self.transform(theta, unit) - self.sample_mean(theta)).reshape(width, width)
        return responses.T @ responses

    def step_rewards(self, samples: Tensor) -> Tensor:
        """The cost ``x_tᵀQx_t + u_tᵀRu_t`` of each step, shape ``(..., H)``."""
        system = self._system
        n = self.states
        state, action = samples[..., :n], samples[..., n:]
        return (torch.einsum("...i,ij,...j->...", state, system.Q, state)
                + torch.einsum("...i,ij,...j->...", action, system.R, action))

    def _discounts(self) -> Tensor:
        return self.gamma ** torch.arange(self.horizon, dtype=DTYPE)

    def f(self, samples: Tensor) -> Tensor:
        return self.step_rewards(samples) @ self._discounts()

    def reward_to_go(self, samples: Tensor) -> Tensor:
        """``Σ_{k≥t} γ^k c_k`` for each step ``t``, shape ``(..., H)``."""
        discounted = self.step_rewards(samples) * self._discounts()
        return discounted.flip(-1).cumsum(-1).flip(-1)

    def _exploration(self, theta: Tensor, samples: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The states, the policy noise ``ε_t = (u_t + K x_t)/σ`` that produced each action,
        and σ."""
        gain, sigma = self._policy(theta)
        state, action = samples[..., : self.states], samples[..., self.states :]
        return state, (action + state @ gain.T) / sigma, sigma

    def step_score(self, theta: Tensor, samples: Tensor, weights: Tensor) -> Tensor:
        """``Σ_t w_t ∇θ log π(u_t|x_t)``, shape ``(R, n, dim)``, for weights ``(R, n, H)``."""
        state, eps, sigma = self._exploration(theta, samples)
        gain = -torch.einsum("...t,...ti,...tj->...ij", weights, eps, state) / sigma
        scale = (weights * ((eps**2).sum(-1) - self.actions)).sum(-1)
        return torch.cat([gain.flatten(-2), scale[..., None]], dim=-1)

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        return self.step_score(theta, samples, torch.ones(samples.shape[:-1], dtype=DTYPE))

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        """``Σ_t log π(u_t|x_t) = Σ_t −|ε_t|²/2 − m log σ − (m/2) log 2π``; the densities of
        the initial state and of the transitions do not depend on θ and are left out."""
        _, eps, sigma = self._exploration(theta, samples)
        per_step = (-0.5 * (eps**2).sum(-1) - self.actions * torch.log(sigma)
                    - 0.5 * self.actions * math.log(2 * math.pi))
        return per_step.sum(-1)

    def _riccati(self, theta: Tensor) -> QuadraticValues:
        """``P_t`` and ``c_t`` for ``t = 0..H`` by the backward recursion."""
        system = self._system
        gain, sigma = self._policy(theta)
        closed_loop = system.A - system.B @ gain
        stage = system.Q + gain.T @ system.R @ gain
        noise = sigma**2 * system.B @ system.B.T + system.noise_factor @ system.noise_factor.T
        action_cost = sigma**2 * torch.trace(system.R)
        cost_to_go = [torch.zeros_like(system.A)]
        offsets = [torch.zeros((), dtype=DTYPE)]
        for _ in range(self.horizon):
            following = cost_to_go[-1]
            offsets.append(action_cost + self.gamma * ((following * noise).sum() + offsets[-1]))
            cost_to_go.append(stage + self.gamma * closed_loop.T @ following @ closed_loop)
        return QuadraticValues(torch.stack(cost_to_go[::-1]), torch.stack(offsets[::-1]))

    def _second_moments(self, theta: Tensor) -> Tensor:
        """``M_t = E[x_t x_tᵀ]`` for ``t = 0..H−1`` by the forward Lyapunov recursion."""
        system = self._system
        gain, sigma = self._policy(theta)
        closed_loop = system.A - system.B @ gain
        noise = sigma**2 * system.B @ system.B.T + system.noise_factor @ system.noise_factor.T
        moment = (system.initial_factor @ system.initial_factor.T
                  + torch.outer(system.initial_mean, system.initial_mean))
        moments = [moment]
        for _ in range(self.horizon - 1):
            moment = closed_loop @ moment @ closed_loop.T + noise
            moments.append(moment)
        return torch.stack(moments)

    def value(self, theta: Tensor) -> Tensor:
        values = self._riccati(theta)
        system = self._system
        initial = (system.initial_factor @ system.initial_factor.T
                   + torch.outer(system.initial_mean, system.initial_mean))
        return (values.P[0] * initial).sum() + values.c[0]

    def exact_grad(self, theta: Tensor) -> Tensor:
        system = self._system
        gain, sigma = self._policy(theta)
        following = self._riccati(theta).P[1:]  # P_{t+1} for t = 0..H−1
        discounts = self._discounts()
        curvature = system.R + self.gamma * system.B.T @ following @ system.B  # (H, m, m)
        slope = curvature @ gain - self.gamma * system.B.T @ following @ system.A  # E_t
        d_gain = 2 * torch.einsum("t,tij,tjk->ik", discounts, slope, self._second_moments(theta))
        traces = torch.diagonal(curvature, dim1=-2, dim2=-1).sum(-1)  # tr R + γ tr(BᵀP_{t+1}B)
        d_log_sigma = 2 * sigma**2 * (discounts @ traces)
        return torch.cat([d_gain.reshape(-1), d_log_sigma.reshape(1)])

    def exact_values(self, theta: Tensor) -> QuadraticValues:
        """The exact cost-to-go of the current policy (see the class docstring)."""
        return self._riccati(theta)

    def step_values(self, theta: Tensor, samples: Tensor, values: QuadraticValues) -> Tensor:
        """``V_t(x_t)`` at each step, shape ``(..., H)``."""
        state = samples[..., : self.states]
        quadratic = torch.einsum("...ti,tij,...tj->...t", state, values.P[: self.horizon], state)
        return quadratic + values.c[: self.horizon]


def _matrix(rows: list[list[float]]) -> Tensor:
    return torch.tensor(rows, dtype=DTYPE)


@register("lqr_stable")
@dataclass(frozen=True)
class StableLQR(LinearQuadraticRegulator):
    """A damped mass on a spring, pushed by a force: an open-loop-stable 2-state LQR.

    Position and velocity, explicit Euler with step 0.1, stiffness 1, damping 1:
    ``A = [[1, 0.1], [−0.1, 0.9]]`` (spectral radius 0.954), ``B = [[0], [0.1]]``;
    ``Q = I``, ``R = 0.1``, process noise ``W = 0.01² I``, ``x_0 ~ N((1, 0), 0.1² I)``.
    θ = (K ∈ R^{1×2}, log σ); the defaults start from the open loop (gain 0) with σ = 0.5,
    H = 20, γ = 0.99. See :class:`LinearQuadraticRegulator` for the exact J and gradient.
    """

    display_name = "LQR, stable"
    parameter_symbols: ClassVar = {"gamma": "γ", "sigma": "σ"}

    reference: ClassVar = "Fazel et al., 2018 (ICML)"
    # A gain of order one moves the cost visibly (B is 0.1), so ‖∇J‖ stands out against the
    # spread of the score-function estimate: a 1% error shows in ~3x fewer draws than at K = 0.
    check_pattern: ClassVar = 1.0

    def system(self) -> LinearSystem:
        return LinearSystem(
            A=_matrix([[1.0, 0.1], [-0.1, 0.9]]),
            B=_matrix([[0.0], [0.1]]),
            Q=torch.eye(2, dtype=DTYPE),
            R=_matrix([[0.1]]),
            noise_factor=0.01 * torch.eye(2, dtype=DTYPE),
            initial_mean=torch.tensor([1.0, 0.0], dtype=DTYPE),
            initial_factor=0.1 * torch.eye(2, dtype=DTYPE),
        )


@register("lqr_unstable")
@dataclass(frozen=True)
class UnstableLQR(LinearQuadraticRegulator):
    """An open-loop-unstable 3-state LQR: the coupled system of Dean et al.

    ``A = [[1.01, 0.01, 0], [0.01, 1.01, 0.01], [0, 0.01, 1.01]]`` (spectral radius 1.024:
    left alone, the state grows), ``B = I``, ``Q = R = I``, process noise ``W = 0.1² I``,
    ``x_0 ~ N(0, I)``. The dynamics are those of Dean, Mania, Matni, Recht & Tu, "On the
    sample complexity of the linear quadratic regulator", Found. Comput. Math. 2020;
    the cost weights here are the identity. θ = (K ∈ R^{3×3}, log σ); by default
    the closed loop is the open loop (gain 0, so the pathwise gradient through the dynamics
    grows with the horizon, as in Parmas, Rasmussen, Peters & Doya, "PIPPS", ICML 2018);
    ``gain > 0.024`` stabilizes it (K = gain·I). σ = 0.5, H = 20, γ = 0.99.
    """

    display_name = "LQR, unstable"
    parameter_symbols: ClassVar = {"gamma": "γ", "sigma": "σ"}

    reference: ClassVar = "Dean et al., 2020; Fazel et al., 2018 (ICML)"
    # Checked around a stabilizing gain: in the open loop the score-function estimate's spread
    # along ∇J is several times ‖∇J‖, and the pathwise one grows with the horizon.
    check_params: ClassVar = MappingProxyType({"gain": 0.3})

    def system(self) -> LinearSystem:
        return LinearSystem(
            A=_matrix([[1.01, 0.01, 0.0], [0.01, 1.01, 0.01], [0.0, 0.01, 1.01]]),
            B=torch.eye(3, dtype=DTYPE),
            Q=torch.eye(3, dtype=DTYPE),
            R=torch.eye(3, dtype=DTYPE),
            noise_factor=0.1 * torch.eye(3, dtype=DTYPE),
            initial_mean=torch.zeros(3, dtype=DTYPE),
            initial_factor=torch.eye(3, dtype=DTYPE),
        )
