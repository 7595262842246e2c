"""Pieces every observation family shares."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Added to every component's total responsibility, as scikit-learn does, so an empty component
# has finite parameters before it is re-seeded.
EPS_NK = 10.0 * torch.finfo(torch.float64).eps


def buffer(workspace: dict | None, name: str, shape: tuple, like: Tensor) -> Tensor | None:
    """A contiguous tensor of ``shape`` carved from a reusable buffer, or None without one.

    A fresh multi-MiB allocation per chunk costs page faults that, measured, doubled the time
    of the matrix product filling it; a workspace the caller keeps across chunks avoids them.
    """
    if workspace is None:
        return None
    numel = math.prod(shape)
    buf = workspace.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
        buf = torch.empty(numel, dtype=like.dtype, device=like.device)
        workspace[name] = buf
    return buf[:numel].view(shape)
