"""Molecule encoder (JESTR style): a GINE graph network over RDKit graphs, pooled, into the joint space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch_geometric.nn import GINEConv, global_add_pool, global_mean_pool

from engine.core.config import Settings, setting
from engine.models.encoders.featurize import ATOM_FEATURE_SIZES, BOND_FEATURE_SIZES, GraphBatch


@dataclass(frozen=True)
class MoleculeEncoderConfig(Settings):
    """Shape of the molecule encoder."""

    hidden_dim: int = setting(128, ge=1)
    n_layers: int = setting(3, ge=1)
    head_dim: int = setting(512, ge=1)
    dropout: float = setting(0.1, ge=0.0, lt=1.0)


def one_hot(codes: npt.NDArray[np.int8], sizes: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Concatenated one-hot encoding of categorical columns ``codes`` ``[n, len(sizes)]``."""
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = np.zeros((codes.shape[0], int(sum(sizes))), dtype=np.float32)
    if codes.shape[0]:
        cols = codes.astype(np.int64) + offsets
        out[np.arange(codes.shape[0])[:, None], cols] = 1.0
    return out


class MoleculeEncoder(nn.Module):
    """GINE layers with residuals and layer norm; sum- and mean-pooled over atoms of every layer."""

    def __init__(self, config: MoleculeEncoderConfig, out_dim: int) -> None:
        super().__init__()
        h = config.hidden_dim
        self.atom_encoder = nn.Linear(sum(ATOM_FEATURE_SIZES), h)
        self.bond_encoders = nn.ModuleList(nn.Linear(sum(BOND_FEATURE_SIZES), h)
                                           for _ in range(config.n_layers))
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, h)), train_eps=True)
            for _ in range(config.n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for _ in range(config.n_layers))
        pooled = 2 * h * (config.n_layers + 1)
        self.head = nn.Sequential(nn.Linear(pooled, config.head_dim), nn.ReLU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.head_dim, out_dim))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        """Unnormalised embeddings ``[n_graphs, out_dim]`` from one-hot atom ``x`` and bond ``edge_attr``."""
        h = self.atom_encoder(x)
        pooled = [global_add_pool(h, batch, n_graphs), global_mean_pool(h, batch, n_graphs)]
        for conv, norm, bond in zip(self.convs, self.norms, self.bond_encoders, strict=True):
            h = h + torch.relu(norm(conv(h, edge_index, bond(edge_attr))))
            pooled += [global_add_pool(h, batch, n_graphs), global_mean_pool(h, batch, n_graphs)]
        # scale sums so that large molecules do not dominate the first head layer
        feats = torch.cat([p if i % 2 else torch.log1p(p.abs()) * p.sign() for i, p in enumerate(pooled)], 1)
        return self.head(feats)

    def forward_batch(self, graphs: GraphBatch, device: str | torch.device = "cpu") -> torch.Tensor:
        """Forward pass of a :class:`GraphBatch` (numpy) on ``device``."""
        return self(torch.from_numpy(one_hot(graphs.x, ATOM_FEATURE_SIZES)).to(device),
                    torch.from_numpy(graphs.edge_index).to(device),
                    torch.from_numpy(one_hot(graphs.edge_attr, BOND_FEATURE_SIZES)).to(device),
                    torch.from_numpy(graphs.batch).to(device), graphs.n_graphs)
