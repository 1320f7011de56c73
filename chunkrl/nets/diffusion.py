"""Diffusion parameterisations over (flattened or time-major) action chunks.

- ``DDPM``: the discrete denoising diffusion of Ho et al. as Diffusion-QL uses it: a noise schedule of
  ``T`` steps (``vp``: Diffusion-QL's variance-preserving schedule, its default with ``T = 5``;
  ``linear``; ``cosine``), forward noising, ε-prediction, and the ancestral reverse chain with the
  predicted ``x0`` clipped to the action bounds at every step.
- ``Consistency``: the consistency-model parameterisation of Song et al. with Karras et al.'s (EDM)
  boundary scalings, as CPQL uses it: ``f(x, σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, σ)``, the
  identity at ``σ = σ_min``; one-step sampling from ``σ_max``, or a few steps with re-noising.

Both take the denoiser as an argument (``denoiser(x, step_input, conditioning) -> same shape as x``)
and their random draws from a noise source (``nets/noise.py``), so agents decide what is learned and
where randomness comes from. Everything that is sampled here keeps gradients when they are enabled:
the Q term of Diffusion-QL and CPQL differentiates through the chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from chunkrl.nets.noise import GlobalNoise

Schedule = Literal["vp", "linear", "cosine"]
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def beta_schedule(kind: Schedule, steps: int) -> torch.Tensor:
    """β_1..β_T (float64) of the named schedule.

    vp: ``β_t = 1 - exp(-b_min/T - (b_max - b_min)(2t - 1) / (2 T²))`` with b_min 0.1, b_max 10
    (Diffusion-QL's default); linear: evenly from 1e-4 to 2e-2; cosine: Nichol & Dhariwal's with
    s = 0.008, β clipped to 0.999.
    """
    if steps < 1:
        raise ValueError(f"a diffusion needs at least one step, got {steps}")
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    if kind == "vp":
        b_min, b_max = 0.1, 10.0
        return 1.0 - torch.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)
    if kind == "linear":
        return torch.linspace(1e-4, 2e-2, steps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        x = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
        cumulative = torch.cos(((x / steps) + s) / (1 + s) * math.pi * 0.5) ** 2
        cumulative = cumulative / cumulative[0]
        return (1.0 - cumulative[1:] / cumulative[:-1]).clamp(0.0, 0.999)
    raise ValueError(f"unknown diffusion schedule {kind!r}; use vp, linear or cosine")


class DDPM(nn.Module):
    """Schedule constants (buffers, so they follow the agent's device) and the DDPM operations.

    Step indices are 0-based: ``t = 0`` is the least noisy step, ``t = T - 1`` the noisiest; the
    denoiser receives ``t`` as a float, as in Diffusion-QL.
    """

    def __init__(self, steps: int = 5, schedule: Schedule = "vp", low: float = -1.0, high: float = 1.0):
        super().__init__()
        self.steps, self.low, self.high = steps, low, high
        betas = beta_schedule(schedule, steps)
        alphas = 1.0 - betas
        cumulative = torch.cumprod(alphas, 0)
        previous = torch.cat([torch.ones(1, dtype=torch.float64), cumulative[:-1]])
        variance = betas * (1.0 - previous) / (1.0 - cumulative)
        constants = {
            "betas": betas,
            "alphas_cumprod": cumulative,
            "sqrt_alphas_cumprod": cumulative.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1.0 - cumulative).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / cumulative).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / cumulative - 1.0).sqrt(),
            "posterior_variance": variance,
            "posterior_log_variance": variance.clamp_min(1e-20).log(),
            "posterior_mean_x0": betas * previous.sqrt() / (1.0 - cumulative),
            "posterior_mean_xt": (1.0 - previous) * alphas.sqrt() / (1.0 - cumulative),
        }
        for name, value in constants.items():
            self.register_buffer(name, value.float(), persistent=False)

    @staticmethod
    def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` shaped to broadcast against ``like`` ([B] -> [B, 1, ...])."""
        return values[t].view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Forward noising: ``x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε``."""
        return (
            self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``x0`` implied by a noise prediction, clipped to the action bounds."""
        x0 = (
            self._at(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
            - self._at(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
        )
        return x0.clamp(self.low, self.high)

    def reverse_step(
        self, denoiser: Denoiser, x_t: torch.Tensor, t: int, conditioning: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """``x_{t-1}`` from ``x_t``: the posterior mean at the clipped ``x0`` plus its noise (none at t = 0)."""
        steps = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        eps = denoiser(x_t, steps.float(), conditioning)
        x0 = self.predict_x0(x_t, steps, eps)
        mean = self._at(self.posterior_mean_x0, steps, x_t) * x0 + self._at(self.posterior_mean_xt, steps, x_t) * x_t
        if t == 0:
            return mean
        return mean + (0.5 * self._at(self.posterior_log_variance, steps, x_t)).exp() * noise

    def sample(
        self, denoiser: Denoiser, conditioning: torch.Tensor, shape: tuple[int, ...], noise: GlobalNoise
    ) -> torch.Tensor:
        """Actions of ``shape`` through the whole reverse chain from ``x_T ~ N(0, I)``, clipped to the bounds."""
        device = conditioning.device
        x = noise.normal(shape, device)
        for t in reversed(range(self.steps)):
            x = self.reverse_step(denoiser, x, t, conditioning, noise.normal(shape, device) if t else x)
        return x.clamp(self.low, self.high)

    def loss_terms(
        self, denoiser: Denoiser, x0: torch.Tensor, conditioning: torch.Tensor, noise: GlobalNoise
    ) -> torch.Tensor:
        """Squared ε-prediction errors (same shape as ``x0``) at a uniform random step per sample."""
        t = (noise.uniform((x0.shape[0],), x0.device) * self.steps).long().clamp_max(self.steps - 1)
        eps = noise.normal(tuple(x0.shape), x0.device)
        return (denoiser(self.q_sample(x0, t, eps), t.float(), conditioning) - eps).square()


class Consistency(nn.Module):
    """Karras-parameterised consistency function over actions (CPQL).

    ``scalings(σ)``: the boundary-condition scalings ``c_skip = σ_d² / ((σ - σ_min)² + σ_d²)``,
    ``c_out = (σ - σ_min) σ_d / sqrt(σ² + σ_d²)``, ``c_in = 1 / sqrt(σ² + σ_d²)``; the denoiser receives
    ``250 log σ`` as its step input (the consistency-models code's rescaling).
    """

    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        sigma_data: float = 0.5,
        scales: int = 40,
        low: float = -1.0,
        high: float = 1.0,
    ):
        super().__init__()
        if not 0 < sigma_min < sigma_max or scales < 2:
            raise ValueError(f"need 0 < sigma_min < sigma_max and scales >= 2 (got {sigma_min}, {sigma_max}, {scales})")
        self.sigma_min, self.sigma_max, self.rho, self.sigma_data = sigma_min, sigma_max, rho, sigma_data
        self.scales, self.low, self.high = scales, low, high

    def sigmas(self, index: torch.Tensor) -> torch.Tensor:
        """The Karras discretisation ``σ_i`` for ``i = 0..scales-1`` (σ_max first, σ_min last)."""
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (hi + index / (self.scales - 1) * (lo - hi)) ** self.rho

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d2 = self.sigma_data**2
        c_skip = d2 / ((sigma - self.sigma_min) ** 2 + d2)
        c_out = (sigma - self.sigma_min) * self.sigma_data / (sigma**2 + d2).sqrt()
        c_in = 1.0 / (sigma**2 + d2).sqrt()
        return c_skip, c_out, c_in

    def denoise(
        self, model: Denoiser, x: torch.Tensor, sigma: torch.Tensor, conditioning: torch.Tensor
    ) -> torch.Tensor:
        """``f(x, σ)`` clipped to the action bounds; ``sigma`` is [B]."""
        c_skip, c_out, c_in = (c.view(-1, *([1] * (x.dim() - 1))) for c in self.scalings(sigma))
        output = model(c_in * x, 250.0 * torch.log(sigma + 1e-44), conditioning)
        return (c_skip * x + c_out * output).clamp(self.low, self.high)

    def sample(
        self, model: Denoiser, conditioning: torch.Tensor, shape: tuple[int, ...], noise: GlobalNoise, steps: int = 1
    ) -> torch.Tensor:
        """One step from ``σ_max`` (``steps = 1``), or ``steps`` steps: denoise, re-noise to the next of
        ``steps - 1`` evenly spaced (in the Karras index) smaller σ, denoise again."""
        device = conditioning.device
        batch = torch.ones(shape[0], device=device)
        x = self.denoise(model, noise.normal(shape, device) * self.sigma_max, batch * self.sigma_max, conditioning)
        for i in range(1, steps):
            index = torch.tensor(i * (self.scales - 1) / steps, device=device)
            sigma = self.sigmas(index).clamp(self.sigma_min, self.sigma_max)
            x = x + noise.normal(shape, device) * (sigma**2 - self.sigma_min**2).sqrt()
            x = self.denoise(model, x, batch * sigma, conditioning)
        return x

    def loss_terms(
        self,
        model: Denoiser,
        target_model: Denoiser,
        x0: torch.Tensor,
        conditioning: torch.Tensor,
        noise: GlobalNoise,
        kind: Literal["consistency", "reconstruction"],
    ) -> torch.Tensor:
        """Per-element errors (same shape as ``x0``), weighted by the Karras weight ``1/σ² + 1/σ_d²``.

        consistency (consistency training, the CPQL paper's loss): ``f(x0 + σ_n z, σ_n)`` against the
        target model's ``f⁻(x0 + σ_{n+1} z, σ_{n+1})`` at the adjacent smaller σ, without gradient to the
        target. reconstruction (CPQL's released code): ``f(x0 + σ_n z, σ_n)`` against ``x0``.
        """
        index = (noise.uniform((x0.shape[0],), x0.device) * (self.scales - 1)).floor().clamp_max(self.scales - 2)
        z = noise.normal(tuple(x0.shape), x0.device)
        sigma, smaller = self.sigmas(index), self.sigmas(index + 1)
        expand = (-1, *([1] * (x0.dim() - 1)))
        prediction = self.denoise(model, x0 + z * sigma.view(expand), sigma, conditioning)
        if kind == "consistency":
            with torch.no_grad():
                target = self.denoise(target_model, x0 + z * smaller.view(expand), smaller, conditioning)
        elif kind == "reconstruction":
            target = x0
        else:
            raise ValueError(f"unknown consistency loss {kind!r}; use consistency or reconstruction")
        weight = (1.0 / sigma**2 + 1.0 / self.sigma_data**2).view(expand)
        return (prediction - target).square() * weight
