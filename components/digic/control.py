"""The full-scale setting (digic.md §7) on Gymnasium's CartPole-v1: an expert, demonstrations from one domain,
and closed-loop evaluation in the training and the shifted domain.

Expert: the discrete-time LQR of CartPole's own dynamics linearised at the upright equilibrium (Euler step, the
environment's masses, length, force and tau), acting a = 1[u + noise > 0] with u = -K s the LQR force and
N(0, expert_noise^2) decision noise: a = pi_E(x_Pa(A), eps_A) as the spec's setting assumes. The component
computes this expert instead of training one with RL; it balances the pole for the full 500 steps.
Observation = the environment's 4 state dims + `cue` + `noise`:
  cue   = beta_e (2 a_E - 1) + cue_noise N(0, 1): a channel that echoes the demonstrator's command (an
          action-effect cue with a domain-dependent sign, spec §7), beta = +1 in training, -1 when shifted;
          in closed loop it echoes what the expert would command in the current state;
  noise = N(0, 1): an irrelevant channel.
The state dims are measured before the action (tier knowledge for PC: A -> state is forbidden)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg import solve_discrete_are

STATE = ("x", "x_dot", "theta", "theta_dot")
FEATURES = (*STATE, "cue", "noise")
ENV_ID = "CartPole-v1"


def make_env():
    try:
        import gymnasium
    except ImportError as error:  # a clear one-line error before any compute
        from components.core.errors import ConfigError

        raise ConfigError(f"digic task 'cartpole' needs gymnasium (pip install gymnasium): {error}") from None
    return gymnasium.make(ENV_ID)


def lqr_gain(env) -> np.ndarray:
    """K of the discrete LQR (Q = I, R = 1) for CartPole's dynamics linearised at the upright pole."""
    cart = env.unwrapped
    total = cart.masscart + cart.masspole
    half_length, gravity, tau = cart.length, cart.gravity, cart.tau
    denominator = half_length * (4.0 / 3.0 - cart.masspole / total)
    theta_acc_theta, theta_acc_force = gravity / denominator, -1.0 / (total * denominator)
    x_acc_theta = -cart.masspole * half_length * theta_acc_theta / total
    x_acc_force = 1.0 / total - cart.masspole * half_length * theta_acc_force / total
    continuous = np.array([[0, 1, 0, 0], [0, 0, x_acc_theta, 0], [0, 0, 0, 1], [0, 0, theta_acc_theta, 0]])
    forcing = np.array([[0.0], [x_acc_force], [0.0], [theta_acc_force]])
    a, b = np.eye(4) + tau * continuous, tau * forcing  # the environment's Euler step
    p = solve_discrete_are(a, b, np.eye(4), np.eye(1))
    return np.linalg.solve(np.eye(1) + b.T @ p @ b, b.T @ p @ a)[0]


class Domain:
    """One domain of the task: the cue's sign beta; draws the expert's command and the extra channels."""

    def __init__(self, gain: np.ndarray, beta: float, expert_noise: float, cue_noise: float):
        self.gain, self.beta, self.expert_noise, self.cue_noise = gain, beta, expert_noise, cue_noise

    def expert_action(self, state: np.ndarray, rng: np.random.Generator) -> int:
        return int(-self.gain @ state + self.expert_noise * rng.standard_normal() > 0)

    def observe(self, state: np.ndarray, expert_action: int, rng: np.random.Generator) -> np.ndarray:
        cue = self.beta * (2 * expert_action - 1) + self.cue_noise * rng.standard_normal()
        return np.concatenate([state, [cue, rng.standard_normal()]])


def rollout(
    env, domain: Domain, act: Callable[[np.ndarray], int] | None, seed: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float]:
    """One episode; `act` maps an observation row to an action (None: the expert acts). Returns the observed
    rows, the expert's actions in them and the episode's return."""
    state, _ = env.reset(seed=seed)
    rows, actions, total, done = [], [], 0.0, False
    while not done:
        state = np.asarray(state, dtype=np.float64)
        expert = domain.expert_action(state, rng)
        row = domain.observe(state, expert, rng)
        rows.append(row)
        actions.append(expert)
        action = expert if act is None else int(act(row))
        state, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return np.array(rows), np.array(actions), total


def demonstrations(env, domain: Domain, episodes: int, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray, list]:
    """`episodes` expert episodes pooled into one table (rows, actions) plus their returns; episode k resets the
    environment with seed (seed, stream, k) so that every table is a function of the run's seed."""
    rng = np.random.default_rng([seed, stream])
    tables = [rollout(env, domain, None, int(rng.integers(2**31)), rng) for _ in range(episodes)]
    return (
        np.concatenate([t[0] for t in tables]),
        np.concatenate([t[1] for t in tables]),
        [t[2] for t in tables],
    )


def mean_return(
    env, domain: Domain, act: Callable[[np.ndarray], int] | None, episodes: int, seed: int, stream: int
) -> float:
    rng = np.random.default_rng([seed, stream])
    return float(np.mean([rollout(env, domain, act, int(rng.integers(2**31)), rng)[2] for _ in range(episodes)]))
