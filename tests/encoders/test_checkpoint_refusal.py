"""A checkpoint holding arbitrary Python objects is refused with our message, not torch's advice to load it
unsafely (``weights_only=False``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.core.errors import IncompatibleArtifactError
from engine.models.checkpoint import load_checkpoint


class Payload:
    """Any class of the caller's: unpickling it could run its code."""


def test_a_pickled_object_is_refused_without_relaying_torch_advice(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"format": "engine.joint_model", "payload": Payload()}, path)  # not weights-only
    with pytest.raises(IncompatibleArtifactError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "refused" in message
    assert "weights_only" not in message and "re-run" not in message.lower()
