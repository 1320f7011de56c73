"""DDPM and consistency parameterisations against hand-computed values."""

import math

import pytest
import torch

from chunkrl.nets.diffusion import DDPM, Consistency, beta_schedule
from chunkrl.nets.noise import GeneratorNoise


def test_vp_schedule_matches_diffusion_ql_formula_worked_by_hand():
    # β_t = 1 - exp(-b_min/T - (b_max - b_min)(2t - 1)/(2T²)), T = 5, b_min 0.1, b_max 10:
    # t = 1: exponent -0.02 - 9.9 * 1 / 50 = -0.218;  t = 5: -0.02 - 9.9 * 9 / 50 = -1.802
    betas = beta_schedule("vp", 5)
    assert betas[0].item() == pytest.approx(1 - math.exp(-0.218), rel=1e-12)
    assert betas[-1].item() == pytest.approx(1 - math.exp(-1.802), rel=1e-12)
    assert betas[2].item() == pytest.approx(1 - math.exp(-0.02 - 9.9 * 5 / 50), rel=1e-12)


def test_linear_and_cosine_schedules():
    assert beta_schedule("linear", 3).tolist() == pytest.approx([1e-4, 0.01005, 0.02])
    cosine = beta_schedule("cosine", 10)
    # ᾱ_T = cos²(π/2)/cos²(s/(1+s)·π/2) = 0, so the last β is clipped to 0.999; all lie in (0, 0.999]
    assert cosine[-1].item() == pytest.approx(0.999)
    assert bool((cosine > 0).all() and (cosine <= 0.999).all())
    with pytest.raises(ValueError, match="unknown diffusion schedule"):
        beta_schedule("sigmoid", 5)


def test_forward_noising_keeps_the_chunk_shape_and_uses_each_samples_step():
    ddpm = DDPM(steps=5, schedule="vp")
    x0 = torch.ones(3, 4, 2)
    noise = torch.zeros(3, 4, 2)
    t = torch.tensor([0, 2, 4])
    x_t = ddpm.q_sample(x0, t, noise)
    assert x_t.shape == (3, 4, 2)
    cumulative = torch.cumprod(1 - beta_schedule("vp", 5), 0)
    for i, step in enumerate(t.tolist()):  # with zero noise, x_t = sqrt(ᾱ_t) x0
        assert torch.allclose(x_t[i], torch.full((4, 2), math.sqrt(cumulative[step].item())))


def test_one_reverse_step_worked_by_hand():
    # linear schedule with T = 2: β = (1e-4, 0.02), ᾱ = (0.9999, 0.9999 * 0.98); step t = 1 (the noisiest)
    ddpm = DDPM(steps=2, schedule="linear")
    b1, a_prev = 0.02, 0.9999
    a_bar = a_prev * (1 - b1)
    eps = 0.3
    x_t = torch.tensor([[[0.5], [1.2]]])  # one chunk of two 1-D actions
    noise = torch.tensor([[[1.0], [-2.0]]])
    out = ddpm.reverse_step(lambda x, step, cond: torch.full_like(x, eps), x_t, 1, torch.zeros(1, 3), noise)

    expected = []
    for x, z in ((0.5, 1.0), (1.2, -2.0)):
        x0 = (x - math.sqrt(1 - a_bar) * eps) / math.sqrt(a_bar)
        x0 = max(-1.0, min(1.0, x0))  # clipped to the action bounds
        mean = b1 * math.sqrt(a_prev) / (1 - a_bar) * x0 + (1 - a_prev) * math.sqrt(1 - b1) / (1 - a_bar) * x
        variance = b1 * (1 - a_prev) / (1 - a_bar)
        expected.append(mean + math.sqrt(variance) * z)
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-5)
    # x = 1.2 gives x0 = (1.2 - 0.1418 * 0.3) / 0.9899 ≈ 1.17 > 1: the clip mattered
    assert (1.2 - math.sqrt(1 - a_bar) * eps) / math.sqrt(a_bar) > 1.0


def test_the_last_reverse_step_adds_no_noise_and_samples_stay_in_bounds():
    ddpm = DDPM(steps=3, schedule="vp")
    x_t = torch.full((2, 3, 1), 0.2)
    denoiser = lambda x, step, cond: torch.zeros_like(x)  # noqa: E731
    first = ddpm.reverse_step(denoiser, x_t, 0, torch.zeros(2, 1), torch.randn(2, 3, 1))
    second = ddpm.reverse_step(denoiser, x_t, 0, torch.zeros(2, 1), torch.randn(2, 3, 1))
    assert torch.equal(first, second)
    samples = ddpm.sample(lambda x, s, c: -5 * x, torch.zeros(64, 1), (64, 3, 1), GeneratorNoise(0))
    assert samples.abs().max() <= 1.0


def test_the_consistency_function_is_the_identity_at_sigma_min():
    consistency = Consistency()
    c_skip, c_out, c_in = consistency.scalings(torch.tensor([0.002]))
    assert c_skip.item() == pytest.approx(1.0) and c_out.item() == pytest.approx(0.0)
    assert c_in.item() == pytest.approx(1 / math.sqrt(0.002**2 + 0.25))
    x = torch.rand(4, 3, 2) * 2 - 1
    model = lambda x, step, cond: torch.randn_like(x) * 100  # noqa: E731  (any network)
    assert torch.allclose(consistency.denoise(model, x, torch.full((4,), 0.002), None), x)
    # far from σ_min the network's output dominates: c_skip(80) = 0.25 / (79.998² + 0.25)
    c_skip, c_out, _ = consistency.scalings(torch.tensor([80.0]))
    assert c_skip.item() == pytest.approx(0.25 / (79.998**2 + 0.25)) and c_out.item() == pytest.approx(
        79.998 * 0.5 / math.sqrt(6400.25)
    )


def test_karras_levels_run_from_sigma_max_to_sigma_min():
    consistency = Consistency(scales=40)
    sigmas = consistency.sigmas(torch.arange(40.0))
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-1].item() == pytest.approx(0.002)
    assert bool((sigmas[1:] < sigmas[:-1]).all())


class FixedNoise:
    """A noise source that returns fixed values (uniform u, normal z)."""

    def __init__(self, u: float, z: float):
        self.u, self.z = u, z

    def uniform(self, shape, device):
        return torch.full(shape, self.u)

    def normal(self, shape, device):
        return torch.full(shape, self.z)


@pytest.mark.parametrize("kind", ["consistency", "reconstruction"])
def test_consistency_losses_worked_by_hand(kind):
    consistency = Consistency(scales=40)
    # u = 0.5 -> level n = floor(0.5 * 39) = 19; its σ_n and the adjacent smaller σ_{n+1}
    lo, hi = 0.002 ** (1 / 7), 80 ** (1 / 7)
    sigma = (hi + 19 / 39 * (lo - hi)) ** 7
    smaller = (hi + 20 / 39 * (lo - hi)) ** 7
    x0, z = 0.2, 0.01
    model = lambda x, step, cond: torch.full_like(x, 0.4)  # noqa: E731  (F = 0.4 everywhere)

    def f(s):  # c_skip(s) (x0 + z s) + c_out(s) * 0.4, clipped to [-1, 1]
        c_skip = 0.25 / ((s - 0.002) ** 2 + 0.25)
        c_out = (s - 0.002) * 0.5 / math.sqrt(s**2 + 0.25)
        return max(-1.0, min(1.0, c_skip * (x0 + z * s) + c_out * 0.4))

    target = f(smaller) if kind == "consistency" else x0
    weight = 1 / sigma**2 + 1 / 0.25
    errors = consistency.loss_terms(model, model, torch.full((1, 2, 1), x0), None, FixedNoise(0.5, z), kind)
    assert errors.flatten().tolist() == pytest.approx([(f(sigma) - target) ** 2 * weight] * 2, rel=1e-4)
    with pytest.raises(ValueError, match="unknown consistency loss"):
        consistency.loss_terms(model, model, torch.zeros(1, 2, 1), None, FixedNoise(0.5, z), "other")
