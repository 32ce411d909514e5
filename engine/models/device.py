"""Which torch device a job runs its model on: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""

from __future__ import annotations

import logging

import torch

from engine.core.config import DEVICE_CHOICES
from engine.core.errors import EngineError

log = logging.getLogger(__name__)



class DeviceUnavailableError(EngineError, RuntimeError):
    """``--device cuda`` on a machine where torch sees no CUDA device."""


def resolve_device(choice: str = "auto") -> str:
    """The torch device name for ``choice``; ``cuda`` without a CUDA device is a :class:`DeviceUnavailableError`."""
    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cpu":
        return "cpu"
    available = torch.cuda.is_available()
    if choice == "cuda" and not available:
        raise DeviceUnavailableError("--device cuda: torch sees no CUDA device (CPU-only torch build, no GPU, "
                                     "or CUDA_VISIBLE_DEVICES hides it); use --device cpu or auto")
    device = "cuda" if available else "cpu"
    log.debug("device %s -> %s", choice, device)
    return device
