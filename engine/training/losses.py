"""Loss functions of the joint model."""

from __future__ import annotations

import torch
from torch.nn import functional as F  # noqa: N812


def info_nce(spectra: torch.Tensor, molecules: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CMC): spectrum ``i`` matches molecule ``i``; molecules beyond the first
    ``len(spectra)`` are extra (hard) negatives for the spectrum-to-molecule direction."""
    n = spectra.shape[0]
    target = torch.arange(n, device=spectra.device)
    logits = scale * spectra @ molecules.T
    s2m = F.cross_entropy(logits, target)
    m2s = F.cross_entropy(logits[:, :n].T, target)
    return 0.5 * (s2m + m2s)


def tanimoto_regression(a: torch.Tensor, b: torch.Tensor, tanimoto: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the cosine of paired (unit) embeddings and their structures' Tanimoto."""
    return F.mse_loss((a * b).sum(dim=1), tanimoto)


def pairwise_tanimoto_regression(emb: torch.Tensor, tanimoto: torch.Tensor) -> torch.Tensor:
    """MSE between all pairwise cosines (off the diagonal) of ``emb`` and a Tanimoto matrix."""
    n = emb.shape[0]
    mask = ~torch.eye(n, dtype=torch.bool, device=emb.device)
    return F.mse_loss((emb @ emb.T)[mask], tanimoto[mask])
