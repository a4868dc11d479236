"""Complex normalisation on rfft2 spectra (``complex`` domain, (B, C, H, W') complex64).

Covariance-whitening batch norm after Trabelsi et al. 2018, "Deep Complex Networks" (ICLR),
and a magnitude-RMS group norm; both also work on the stacked real [re; im] layout
(``stacked``), which the complex resblocks and the dual twins use. Parameters and buffers
are real, as everywhere in :mod:`blocks.complex`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def whiten_parts(x_re: Tensor, x_im: Tensor, mean: tuple[Tensor, Tensor],
                 cov: tuple[Tensor, Tensor, Tensor], eps: float) -> tuple[Tensor, Tensor]:
    """Centre and whiten per channel with the inverse square root of the 2x2 covariance.

    For ``V = [[Vrr, Vri], [Vri, Vii]]`` with ``s = sqrt(det V)`` and
    ``t = sqrt(Vrr + Vii + 2 s)``: ``V^(-1/2) = [[Vii + s, -Vri], [-Vri, Vrr + s]] / (s t)``
    (Trabelsi et al. 2018, eq. 9 onwards). ``eps`` is added to the diagonal.
    """
    vrr, vri, vii = cov[0] + eps, cov[1], cov[2] + eps
    s = torch.sqrt(vrr * vii - vri * vri)
    inv = 1.0 / (s * torch.sqrt(vrr + vii + 2.0 * s))
    a, b, d = [(v * inv)[:, None, None] for v in (vii + s, -vri, vrr + s)]
    xr, xi = x_re - mean[0][:, None, None], x_im - mean[1][:, None, None]
    return a * xr + b * xi, b * xr + d * xi


class ComplexBatchNorm2d(nn.Module):
    """Covariance-whitening complex batch norm (Trabelsi et al. 2018, sec. 3.5).

    Train mode whitens with batch statistics (per channel, over B, H, W') and updates the
    running mean and running 2x2 covariance (unbiased, like ``nn.BatchNorm2d``); eval mode
    uses the running ones. Output ``gamma @ [re; im] + beta`` with a symmetric learnable 2x2
    ``gamma`` (diagonal 1/sqrt(2), so the output has unit complex power ``E|z|^2 = 1``) and
    complex ``beta``. The running covariance starts at ``I/2`` (a unit-power complex
    signal), so a fresh module in eval mode is the identity.
    """

    def __init__(self, *, num_channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        c = num_channels
        self.gamma_rr = nn.Parameter(torch.full((c,), 2 ** -0.5))
        self.gamma_ri = nn.Parameter(torch.zeros(c))
        self.gamma_ii = nn.Parameter(torch.full((c,), 2 ** -0.5))
        self.beta_real = nn.Parameter(torch.zeros(c))
        self.beta_imag = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(2, c))  # re, im
        self.register_buffer("running_cov", torch.tensor([0.5, 0.0, 0.5])[:, None].repeat(1, c))

    def normalize_parts(self, x_re: Tensor, x_im: Tensor) -> tuple[Tensor, Tensor]:
        # x_re, x_im: (B, C, H, W') real each
        if self.training:
            dims = (0, 2, 3)
            m_re, m_im = x_re.mean(dims), x_im.mean(dims)
            cr, ci = x_re - m_re[:, None, None], x_im - m_im[:, None, None]
            cov = ((cr * cr).mean(dims), (cr * ci).mean(dims), (ci * ci).mean(dims))
            n = x_re.numel() // x_re.shape[1]
            with torch.no_grad():
                mom = self.momentum
                self.running_mean.lerp_(torch.stack([m_re, m_im]), mom)
                self.running_cov.lerp_(torch.stack(cov) * (n / max(n - 1, 1)), mom)
            mean = (m_re, m_im)
        else:
            mean, cov = tuple(self.running_mean), tuple(self.running_cov)
        w_re, w_im = whiten_parts(x_re, x_im, mean, cov, self.eps)
        g_rr, g_ri, g_ii = (g[:, None, None] for g in (self.gamma_rr, self.gamma_ri, self.gamma_ii))
        return (g_rr * w_re + g_ri * w_im + self.beta_real[:, None, None],
                g_ri * w_re + g_ii * w_im + self.beta_imag[:, None, None])

    def forward(self, z: Tensor) -> Tensor:
        # (B, C, H, W') complex -> same
        return torch.complex(*self.normalize_parts(z.real, z.imag))

    def stacked(self, x: Tensor) -> Tensor:
        return torch.cat(self.normalize_parts(*x.chunk(2, 1)), 1)  # (B, 2C, H, W')


class ComplexGroupNorm(nn.Module):
    """Magnitude-RMS group norm: ``z / sqrt(mean_group |z|^2 + eps) * g + b``.

    No mean is subtracted: a spectrum's DC and phase carry signal, and dividing by the RMS
    magnitude leaves every phase untouched. The gain ``g`` is real, the bias ``b`` complex.
    Cheaper than whitening and independent of the batch, so it is the resblocks' default.
    """

    def __init__(self, *, num_channels: int, groups: int = 8, eps: float = 1e-5) -> None:
        super().__init__()
        if num_channels % groups:
            raise ValueError(f"complex_group_norm: channels ({num_channels}) must be divisible "
                             f"by groups ({groups})")
        self.groups, self.eps = groups, eps
        self.gain = nn.Parameter(torch.ones(num_channels))
        self.bias_real = nn.Parameter(torch.zeros(num_channels))
        self.bias_imag = nn.Parameter(torch.zeros(num_channels))

    def inv_rms(self, power: Tensor) -> Tensor:
        # power |z|^2: (B, C, H, W') -> (B, C, 1, 1) broadcastable 1/RMS per group
        b, c = power.shape[:2]
        ms = power.reshape(b, self.groups, -1).mean(-1, keepdim=True)
        return torch.rsqrt(ms + self.eps).repeat_interleave(c // self.groups, 1)[..., None]

    def forward(self, z: Tensor) -> Tensor:
        # (B, C, H, W') complex -> same
        scale = self.inv_rms(z.real.square() + z.imag.square()) * self.gain[:, None, None]
        return z * scale + torch.complex(self.bias_real, self.bias_imag)[:, None, None]

    def stacked(self, x: Tensor) -> Tensor:
        # x: (B, 2C, H, W') -> same. A group's re and im planes sit at the same offset of
        # each half, so (B, 2, G, n) views gather them without a copy: the group power
        # sum |z|^2 is one reduction, and scale-and-shift one fused addcmul.
        b, c = x.shape[0], x.shape[1] // 2
        n = x[0, 0].numel() * (c // self.groups)  # complex entries per group
        power = x.square().view(b, 2, self.groups, -1).sum((1, 3))  # (B, G)
        inv = torch.rsqrt(power / n + self.eps).repeat_interleave(c // self.groups, 1)
        bias = torch.stack([self.bias_real, self.bias_imag])[:, :, None]  # (2, C, 1)
        y = torch.addcmul(bias, x.view(b, 2, c, -1), (inv * self.gain)[:, None, :, None])
        return y.view_as(x)
