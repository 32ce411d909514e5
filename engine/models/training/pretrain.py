"""Molecule-encoder pretraining on candidate molecules (issue 18 lever), before the joint training.

The joint training sees a few thousand MassBank structures and their hard negatives. Here the GNN first
learns structure from many more molecules of the candidates file that are none of MassBank's structures
(so neither a training nor a validation structure, nor anything paired with a spectrum): a linear head
predicts each molecule's RDKit fingerprint bits from its embedding (binary cross-entropy), and the
cosines between the embeddings of a batch are regressed on their fingerprint Tanimoto, the same target
the joint training gives the molecule space. The pretrained encoder weights are kept in the run folder
(``molecules_pretrained.pt``), so a resumed run does not pretrain again.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from tqdm import tqdm

from engine.core.errors import InvalidMoleculeError
from engine.core.fsutil import atomic_path
from engine.models.encoders.featurize import GraphStore, featurize_mol, mol_from_smiles
from engine.models.model import JointModel
from engine.models.training.config import PretrainSettings, TrainConfig
from engine.models.training.data import FP_BITS, tanimoto_matrix
from engine.models.training.losses import pairwise_tanimoto_regression

log = logging.getLogger(__name__)

PRETRAINED_FILE = "molecules_pretrained.pt"


def pretraining_molecules(candidates: str | Path, spectra: str | Path, settings: PretrainSettings, *,
                          seed: int) -> list[str]:
    """SMILES of ``settings.molecules`` candidates (+ the held-out ones), seeded, none of them a structure
    of the spectra file (first InChIKey block), at most ``max_mass``."""
    from engine.models.training.candidates import CandidateTable

    cands = CandidateTable.load(candidates)
    library = {str(k) for k in pq.read_table(spectra, columns=["inchikey14"]).column("inchikey14").to_pylist()}
    allowed = np.flatnonzero(~cands.rows_of(library) & (cands.mass <= settings.max_mass))
    n = min(settings.molecules + settings.held_out, allowed.shape[0])
    rows = np.sort(np.random.default_rng([seed, 18]).choice(allowed, size=n, replace=False))
    return [str(s) for s in cands.smiles_of(rows)]


def _featurize_all(smiles: list[str]) -> tuple[GraphStore, npt.NDArray[np.uint8]]:
    """Graphs and unpacked fingerprint bits of the SMILES that RDKit reads (the others are left out)."""
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetRDKitFPGenerator(fpSize=FP_BITS)
    graphs, bits = [], []
    for smi in tqdm(smiles, desc="pretraining molecules", mininterval=10, disable=len(smiles) < 10_000):
        try:
            mol = mol_from_smiles(smi)
            graph = featurize_mol(mol)
        except (InvalidMoleculeError, ValueError):
            continue
        graphs.append(graph)
        bits.append(gen.GetFingerprintAsNumPy(mol).astype(np.uint8))
    return GraphStore.from_graphs(graphs), np.stack(bits) if bits else np.zeros((0, FP_BITS), np.uint8)


def _losses(model: JointModel, head: nn.Linear, store: GraphStore, bits: npt.NDArray[np.uint8],
            rows: npt.NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
    emb = model.encode_graphs(store, rows)
    target = torch.from_numpy(bits[rows].astype(np.float32)).to(emb.device)
    fingerprint = F.binary_cross_entropy_with_logits(head(emb), target)
    tani = torch.from_numpy(tanimoto_matrix(bits[rows], bits[rows])).to(emb.device)
    return fingerprint, pairwise_tanimoto_regression(emb, tani)


def _evaluate(model: JointModel, head: nn.Linear, store: GraphStore, bits: npt.NDArray[np.uint8],
              rows: npt.NDArray[np.int64], batch: int) -> dict[str, float]:
    """Held-out fingerprint loss and Tanimoto RMSE (pairs within batches of ``batch`` molecules)."""
    model.eval()
    sums = np.zeros(2)
    chunks = 0
    with torch.no_grad():
        for start in range(0, rows.shape[0], batch):
            part = rows[start:start + batch]
            if part.shape[0] < 2:
                continue
            fp, tani = _losses(model, head, store, bits, part)
            sums += [float(fp), float(tani)]
            chunks += 1
    model.train()
    chunks = max(chunks, 1)
    return {"held_out_fingerprint_bce": float(sums[0] / chunks),
            "held_out_tanimoto_rmse": math.sqrt(float(sums[1]) / chunks)}


def pretrain_molecule_encoder(model: JointModel, config: TrainConfig, run_dir: Path, *,
                              progress: bool = True) -> dict[str, Any]:
    """Pretrain ``model.molecule_encoder`` in place (or load the weights a previous call kept in
    ``run_dir``); returns a report for the model card (molecules, seconds, held-out fit before and after)."""
    settings = config.pretrain
    path = run_dir / PRETRAINED_FILE
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.molecule_encoder.load_state_dict(state["encoder"])
        log.info("pretrain: molecule encoder weights from %s", path)
        return dict(state["report"])
    t0 = time.time()
    smiles = pretraining_molecules(config.data.candidates, config.data.spectra, settings, seed=config.seed)
    store, bits = _featurize_all(smiles)
    n = len(store)
    rng = np.random.default_rng([config.seed, 19])
    order = rng.permutation(n)
    held = order[:min(settings.held_out, n // 5)]
    fit = order[held.shape[0]:]
    log.info("pretrain: %d molecules (%d held out), featurised in %.0f s", n, held.shape[0], time.time() - t0)
    device = model.device
    head = nn.Linear(model.dim, FP_BITS).to(device)
    params = [*model.molecule_encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=1e-5)
    steps_per_epoch = max(1, fit.shape[0] // settings.batch_molecules)
    total = settings.epochs * steps_per_epoch
    before = _evaluate(model, head, store, bits, held, settings.batch_molecules)
    history = []
    model.train()
    for epoch in range(settings.epochs):
        t_epoch = time.time()
        perm = rng.permutation(fit)
        sums = np.zeros(2)
        bar = tqdm(range(steps_per_epoch), desc=f"pretrain epoch {epoch + 1}", disable=not progress,
                   mininterval=30, leave=False)
        for i in bar:
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:  # cosine decay to 5% of the peak
                group["lr"] = settings.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / total)))
            rows = perm[i * settings.batch_molecules:(i + 1) * settings.batch_molecules]
            fp, tani = _losses(model, head, store, bits, rows)
            loss = settings.weight_fingerprint * fp + settings.weight_tanimoto * tani
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            sums += [float(fp.detach()), float(tani.detach())]
        record = {"epoch": epoch + 1, "fingerprint_bce": float(sums[0] / steps_per_epoch),
                  "tanimoto_rmse": math.sqrt(float(sums[1]) / steps_per_epoch),
                  **_evaluate(model, head, store, bits, held, settings.batch_molecules),
                  "seconds": round(time.time() - t_epoch, 1)}
        history.append(record)
        log.info("pretrain: " + " ".join(f"{k}={v:.4g}" for k, v in record.items()))
    report = {"molecules": int(fit.shape[0]), "held_out": int(held.shape[0]), "epochs": settings.epochs,
              "seconds": round(time.time() - t0, 1), "before": before, "history": history}
    with atomic_path(path) as tmp:
        torch.save({"encoder": model.molecule_encoder.state_dict(), "report": report}, tmp)
    return report
