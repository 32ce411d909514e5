"""The training loop: seeded, resumable from the last epoch checkpoint, validated on ``val`` every epoch."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from engine.core.config import to_dict
from engine.core.fsutil import atomic_path
from engine.models.device import resolve_device
from engine.models.encoders.featurize import GraphStore, concat_ranges
from engine.models.encoders.spectrum import encoder_inputs
from engine.models.model import JointModel, model_pipeline
from engine.models.training.config import TrainConfig
from engine.models.training.data import TRAIN, VAL, PreparedData, prepare_data, tanimoto_matrix
from engine.models.training.losses import (
    candidate_listwise,
    info_nce,
    pairwise_tanimoto_regression,
    tanimoto_regression,
)
from engine.models.training.metrics import balanced_pairs, binned_rmse, hit_rates, rank_of_true
from engine.models.training.sampling import Sampler, augment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    model_path: Path
    history: list[dict[str, Any]]
    model: JointModel


def embed_rows(model: JointModel, data: PreparedData, rows: npt.NDArray[np.int64], *, batch_size: int = 2048
               ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(embeddings, pre-normalisation lengths, side features) of prepared spectra ``rows`` (eval mode)."""
    dim = model.dim
    emb = np.empty((rows.shape[0], dim), np.float32)
    norms = np.empty(rows.shape[0], np.float32)
    sides = []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, rows.shape[0], batch_size):
            part = rows[start:start + batch_size]
            inputs = encoder_inputs(data.peaks(part), data.ion_positive[part], model.config.spectrum)
            e, n = model.encode_spectrum_inputs(inputs)
            emb[start:start + part.shape[0]] = e.cpu().numpy()
            norms[start:start + part.shape[0]] = n.cpu().numpy()
            sides.append(inputs.side)
    model.train(was_training)
    side = np.concatenate(sides) if sides else np.zeros((0, 5), np.float32)
    return emb, norms, side


class Validator:
    """Fixed val spectra, structures and Tanimoto-balanced spectrum pairs (seeded once)."""

    def __init__(self, data: PreparedData, config: TrainConfig) -> None:
        rng = np.random.default_rng([config.seed, 7])
        rows = np.flatnonzero((data.spec_split == VAL) & data.spec_clean)
        if rows.shape[0] > config.train.val_max_spectra:
            rows = np.sort(rng.choice(rows, config.train.val_max_spectra, replace=False))
        self.rows = rows
        self.structs = np.unique(data.spec_struct[rows])
        self.true_col = np.searchsorted(self.structs, data.spec_struct[rows])
        bits = data.fingerprint_bits(self.structs)
        tani = tanimoto_matrix(bits, bits)
        si, sj = balanced_pairs(tani, config.train.val_pairs, rng)
        by_struct = [rows[self.true_col == k] for k in range(self.structs.shape[0])]
        self.pair_a = np.array([rng.choice(by_struct[i]) for i in si], dtype=np.int64)
        self.pair_b = np.array([rng.choice(by_struct[j]) for j in sj], dtype=np.int64)
        self.pair_t = tani[si, sj].astype(np.float32)
        self.pair_pos = np.stack([data.ion_positive[self.pair_a], data.ion_positive[self.pair_b]], 1)
        self.data = data
        self.graphs = subset_graphs(data.graphs(), self.structs)

    def __call__(self, model: JointModel) -> dict[str, Any]:
        if self.rows.shape[0] == 0:
            return {}
        emb, _, _ = embed_rows(model, self.data, self.rows)
        mol = model.embed_graphs(self.graphs)
        ranks = rank_of_true(emb @ mol.T, self.true_col)
        out: dict[str, Any] = hit_rates(ranks, (1, 5, 20), prefix="val_")
        out["val_candidates"] = int(self.structs.shape[0])
        if self.pair_a.shape[0]:
            uniq, inv = np.unique(np.concatenate([self.pair_a, self.pair_b]), return_inverse=True)
            e, _, _ = embed_rows(model, self.data, uniq)
            a, b = e[inv[:self.pair_a.shape[0]]], e[inv[self.pair_a.shape[0]:]]
            pred = (a * b).sum(1)
            out["val_tanimoto_rmse"] = binned_rmse(pred, self.pair_t)["rmse"]
            cross = self.pair_pos[:, 0] != self.pair_pos[:, 1]
            if cross.any():
                out["val_tanimoto_rmse_cross"] = binned_rmse(pred[cross], self.pair_t[cross])["rmse"]
        return out


def subset_graphs(store: GraphStore, rows: npt.NDArray[np.int64]) -> GraphStore:
    """A graph store holding only molecules ``rows`` of ``store`` (in that order)."""
    a0, a1 = store.atom_ptr[rows], store.atom_ptr[rows + 1]
    e0, e1 = store.edge_ptr[rows], store.edge_ptr[rows + 1]
    atom_ptr = np.concatenate([[0], np.cumsum(a1 - a0)]).astype(np.int64)
    edge_ptr = np.concatenate([[0], np.cumsum(e1 - e0)]).astype(np.int64)
    eidx = concat_ranges(e0, e1 - e0)
    return GraphStore(store.x[concat_ranges(a0, a1 - a0)], store.edge_index[:, eidx], store.edge_attr[eidx],
                      atom_ptr, edge_ptr)


def learning_rate(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak, as a pure function of the global step."""
    total = max(1, config.train.epochs * steps_per_epoch)
    warm = max(1, config.train.warmup_epochs * steps_per_epoch)
    if step < warm:
        return config.train.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return config.train.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(config: TrainConfig, *, stop_after_epochs: int | None = None,
          progress: bool = True) -> TrainResult:
    """Train (or resume) the run ``config.run_dir``; fit the quality estimate; export ``model.pt``.

    ``stop_after_epochs`` ends the call early after that many epochs of *this call* (as an interruption
    would); calling again resumes from the last epoch checkpoint with identical results.
    """
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    t_start = time.time()
    data = prepare_data(config.data, model_pipeline(), seed=config.seed)
    torch.manual_seed(config.seed)
    model = JointModel(config.model, model_pipeline())
    if config.train.init_from:
        missing, unexpected = model.load_state_dict(_initial_weights(config), strict=False)
        if unexpected or any(not k.startswith("quality") for k in missing):
            raise ValueError(f"train.init_from {config.train.init_from}: weights do not fit the model "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        log.info(f"train: starting from the weights of {config.train.init_from}")
    device = resolve_device(config.train.device)
    model.to(device)
    log.info("train: model on %s", device)
    pretrain_report = None
    if config.pretrain.molecules:
        from engine.models.training.pretrain import pretrain_molecule_encoder

        if config.train.init_from:
            raise ValueError("pretrain.molecules and train.init_from both set: pretraining starts from scratch")
        pretrain_report = pretrain_molecule_encoder(model, config, run_dir, progress=progress)
    sampler_tani = _train_tanimoto(data)
    sampler = Sampler(data, sampler_tani, batch_structures=config.train.batch_structures,
                      hard_negatives=config.train.hard_negatives, n_bins=config.train.tanimoto_bins,
                      partners_per_anchor=config.train.partners_per_anchor)
    if len(sampler) == 0:
        raise ValueError(f"only {sampler.train_structs.shape[0]} training structures; batch_structures is "
                         f"{config.train.batch_structures}")
    params = [p for n, p in model.named_parameters() if not n.startswith("quality_head.")]
    optimizer = torch.optim.AdamW(params, lr=config.train.lr, weight_decay=config.train.weight_decay)
    validator = Validator(data, config)
    graphs = data.graphs()
    history: list[dict[str, Any]] = []
    start_epoch = 0
    last = run_dir / "last.pt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        if _resume_key(state["config"]) != _resume_key(json.loads(json.dumps(to_dict(config)))):
            raise ValueError(f"{last} was written by another config; use another run name or delete it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        log.info(f"train: resuming {run_dir} after epoch {start_epoch}")
    steps = len(sampler)
    log.info(f"train: {sampler.train_structs.shape[0]} structures, {sampler.spec_rows.shape[0]} spectra, "
        f"{steps} steps/epoch, {config.train.epochs} epochs")
    for done_here, epoch in enumerate(range(start_epoch, config.train.epochs)):
        if stop_after_epochs is not None and done_here >= stop_after_epochs:
            break
        t0 = time.time()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1000 + epoch)
        model.train()
        sums: dict[str, float] = {}
        bar = tqdm(sampler.epoch(rng), total=steps, desc=f"epoch {epoch + 1}", disable=not progress,
                   mininterval=30, leave=False)
        for i, batch in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(epoch * steps + i, steps, config)
            losses = _step_losses(model, data, graphs, batch, sampler, rng, config)
            loss = (config.train.weight_contrastive * losses["contrastive"]
                    + config.train.weight_tanimoto * losses["tanimoto"]
                    + config.train.weight_molecule_tanimoto * losses["molecule_tanimoto"]
                    + config.train.weight_candidates * losses["candidates"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(100.0))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        record: dict[str, Any] = {"epoch": epoch + 1, **{k: v / steps for k, v in sums.items()},
                                  "lr": learning_rate((epoch + 1) * steps - 1, steps, config),
                                  "logit_scale": float(model.logit_scale.detach().exp())}
        record.update(validator(model))
        record["seconds"] = round(time.time() - t0, 1)
        history.append(record)
        log.info("train: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in record.items()))
        with atomic_path(last) as tmp:
            torch.save({"config": json.loads(json.dumps(to_dict(config))), "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "history": history}, tmp)
        (run_dir / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    model_path = run_dir / "model.pt"
    if len(history) < config.train.epochs:
        log.info(f"train: stopped after epoch {len(history)} of {config.train.epochs}; run again to resume")
        return TrainResult(run_dir, model_path, history, model)
    from engine.models.training.quality_fit import fit_quality

    model = model.cpu()  # the quality fit (a minute) and the export run on the CPU
    model, quality_report = fit_quality(model, data, config)
    extra = {"training": {"name": config.name, "seed": config.seed, "epochs": config.train.epochs,
                          "train_structures": int(sampler.train_structs.shape[0]),
                          "train_spectra": int(sampler.spec_rows.shape[0]),
                          "licenses": list(config.data.licenses),
                          "wall_seconds_this_call": round(time.time() - t_start, 1),
                          "epoch_seconds": [h["seconds"] for h in history],
                          "epoch_seconds_total": round(sum(h["seconds"] for h in history), 1),
                          "final": {k: v for k, v in history[-1].items() if isinstance(v, (int, float))}},
             "quality": quality_report}
    if pretrain_report is not None:
        extra["training"]["molecule_pretraining"] = pretrain_report
    from engine.models.training.data import write_attribution

    n_records = write_attribution(data, config.data.spectra, run_dir / "TRAINING_RECORDS.tsv.gz")
    extra["training"]["attribution_records"] = n_records
    digest = model.save(model_path, half=True, extra=extra)
    (run_dir / "summary.json").write_text(json.dumps({"content_hash": digest, **extra}, indent=1) + "\n")
    log.info(f"train: wrote {model_path} ({model_path.stat().st_size / 2**20:.1f} MiB, hash {digest})")
    return TrainResult(run_dir, model_path, history, model)


def _initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """Weights of ``config.train.init_from`` (float32), refused when its model config differs."""
    from engine.models.model import load_model

    init = load_model(config.train.init_from)
    mine = JointModel(config.model, model_pipeline()).config_dict()
    theirs = init.config_dict()
    if {k: v for k, v in theirs.items() if k != "quality"} != {k: v for k, v in mine.items() if k != "quality"}:
        raise ValueError(f"train.init_from {config.train.init_from}: its model config differs from [model]")
    # the quality estimate is refitted after training, so only the encoders' weights carry over
    return {k: v.float() if v.is_floating_point() else v for k, v in init.state_dict().items()
            if not k.startswith("quality")}


def _resume_key(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that must match to resume (thread count and device are execution details)."""
    return {**config, "train": {k: v for k, v in config["train"].items() if k not in ("threads", "device")}}


def _train_tanimoto(data: PreparedData) -> npt.NDArray[np.float16]:
    usable = (data.spec_split == TRAIN) & data.spec_clean
    structs = np.unique(data.spec_struct[usable])
    bits = data.fingerprint_bits(structs)
    out = np.empty((structs.shape[0], structs.shape[0]), np.float16)
    for start in range(0, structs.shape[0], 2048):
        out[start:start + 2048] = tanimoto_matrix(bits[start:start + 2048], bits)
    return out


def _step_losses(model: JointModel, data: PreparedData, graphs: Any, batch: Any, sampler: Sampler,
                 rng: np.random.Generator, config: TrainConfig) -> dict[str, torch.Tensor]:
    settings = config.train
    rows = np.concatenate([batch.spectra, batch.partner_spectra])
    peaks = augment(data.peaks(rows), rng, peak_dropout=settings.peak_dropout,
                    intensity_jitter=settings.intensity_jitter)
    inputs = encoder_inputs(peaks, data.ion_positive[rows], config.model.spectrum)
    emb, _ = model.encode_spectrum_inputs(inputs)
    n = batch.spectra.shape[0]
    spec, partner = emb[:n], emb[n:]
    mol = model.encode_graphs(graphs, batch.molecules)
    scale = model.logit_scale.exp()
    device = model.device
    tani = torch.from_numpy(sampler.tanimoto[np.ix_(batch.anchors, batch.anchors)].astype(np.float32)).to(device)
    return {
        "contrastive": info_nce(spec, mol, scale),
        "tanimoto": tanimoto_regression(spec.repeat_interleave(settings.partners_per_anchor, dim=0), partner,
                                        torch.from_numpy(batch.pair_tanimoto).to(device)),
        "molecule_tanimoto": pairwise_tanimoto_regression(mol[:n], tani),
        "candidates": (candidate_listwise(spec, mol, torch.from_numpy(batch.negative_owner).to(device), scale)
                       if settings.weight_candidates else torch.zeros((), device=device)),
    }
