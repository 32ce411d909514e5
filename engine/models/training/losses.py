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


def candidate_listwise(spectra: torch.Tensor, molecules: torch.Tensor, owner: torch.Tensor,
                       scale: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each spectrum over its own molecule (row ``i`` of ``molecules``) and the hard
    negatives it owns (rows ``n + j`` with ``owner[j] == i``): the candidate-ranking task, where the
    competitors are same-formula and near-mass molecules rather than the rest of the batch."""
    n = spectra.shape[0]
    if owner.numel() == 0:
        return spectra.new_zeros(())
    counts = torch.bincount(owner, minlength=n)
    width = int(counts.max())
    # slot of each negative within its owner's row (negatives arrive grouped by owner)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(owner.shape[0], device=owner.device) - first[owner]
    logits = spectra.new_full((n, 1 + width), float("-inf"))
    logits[:, 0] = (spectra * molecules[:n]).sum(1)
    logits[owner, 1 + slot] = (spectra[owner] * molecules[n:n + owner.shape[0]]).sum(1)
    target = torch.zeros(n, dtype=torch.long, device=spectra.device)
    return F.cross_entropy(scale * logits, target)
