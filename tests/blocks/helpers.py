"""Helpers shared by the block-family tests."""
from __future__ import annotations

import torch

from blocks.core import TensorSpec


def cspec(c: int, h: int, wh: int) -> TensorSpec:
    return TensorSpec("complex", (c, h, wh))


def crandn(*shape: int, dtype=torch.complex64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=g)


def gradcheck_module(m: torch.nn.Module, *inputs: torch.Tensor, fast: bool = False) -> bool:
    """gradcheck w.r.t. the inputs AND every parameter, in float64 / complex128.

    ``fast`` checks random projections of the Jacobian instead of every entry (torch's
    fast mode), for blocks with many parameters.
    """
    m = m.double()
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())

    def f(*args):
        return torch.func.functional_call(m, dict(zip(names, args[:len(names)])),
                                          args[len(names):])

    return torch.autograd.gradcheck(f, params + inputs, eps=1e-6, atol=1e-5, fast_mode=fast)


def family_examples(family: str) -> dict:
    """``{name: (params, inputs)}`` of every registered block of ``family``, from the
    example each block carries in its registration."""
    import blocks

    return {n: blocks.get(n).example_config() for n in blocks.names()
            if blocks.get(n).family == family}
