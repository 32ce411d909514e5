"""Fit and choose the quality estimate on the calibration fold (train structures held out of training).

Every calibration spectrum (clean or not) gets a target: the RMSE of the Tanimoto its embedding
predicts against Tanimoto-balanced partner spectra from the training fold. Candidate methods are fitted
on one half of the calibration structures and compared on the other: ``peaks``, ``knn``, ``mlp``, and
MC-dropout spread (measured for comparison; not shippable at speed, it needs several passes). The
method whose kept pairs have the lowest RMSE when 20% of spectra are flagged is refitted on the whole
fold and stored in the model.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from engine.models.encoders.spectrum import encoder_inputs
from engine.models.model import JointModel
from engine.models.quality import QualityMethod, isotonic
from engine.models.training.config import TrainConfig
from engine.models.training.data import CALIB, TRAIN, PreparedData, tanimoto_matrix

log = logging.getLogger(__name__)

N_PARTNERS = 128
FLAG_SHARE = 0.2
MIN_CALIBRATION = 40


def _partners(data: PreparedData, cal_rows: npt.NDArray[np.int64], ref_rows: npt.NDArray[np.int64],
              rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """``N_PARTNERS`` reference spectra per calibration spectrum, drawn evenly over Tanimoto bins."""
    cal_structs, cal_inv = np.unique(data.spec_struct[cal_rows], return_inverse=True)
    ref_structs, ref_inv = np.unique(data.spec_struct[ref_rows], return_inverse=True)
    tani = tanimoto_matrix(data.fingerprint_bits(cal_structs), data.fingerprint_bits(ref_structs))
    by_ref = np.argsort(ref_inv, kind="stable")
    ref_ptr = np.concatenate([[0], np.cumsum(np.bincount(ref_inv, minlength=ref_structs.shape[0]))])
    bins = np.minimum((tani * 10).astype(np.int64), 9)
    partners = np.empty((cal_rows.shape[0], N_PARTNERS), np.int64)
    sims = np.empty((cal_rows.shape[0], N_PARTNERS), np.float32)
    for c in range(cal_structs.shape[0]):
        members = np.flatnonzero(cal_inv == c)
        nonempty = [np.flatnonzero(bins[c] == b) for b in range(10)]
        nonempty = [x for x in nonempty if x.shape[0]]
        for m in members:
            groups = rng.integers(0, len(nonempty), N_PARTNERS)
            ps = np.array([rng.choice(nonempty[g]) for g in groups], dtype=np.int64)
            lo, hi = ref_ptr[ps], ref_ptr[ps + 1]
            picks = by_ref[lo + (rng.random(N_PARTNERS) * (hi - lo)).astype(np.int64)]
            partners[m] = ref_rows[picks]
            sims[m] = tani[c, ps]
    return partners, sims


def _embed(model: JointModel, data: PreparedData, rows: npt.NDArray[np.int64], *, mc: int = 0
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, npt.NDArray[np.float32]]:
    """Embeddings, lengths, side features; with ``mc > 0`` also the MC-dropout spread per spectrum."""
    inputs = encoder_inputs(data.peaks(rows), data.ion_positive[rows], model.config.spectrum)
    model.eval()
    with torch.no_grad():
        emb, norm = model.encode_spectrum_inputs(inputs)
        spread = np.zeros(rows.shape[0], np.float32)
        if mc:
            model.spectrum_encoder.train()
            runs = torch.stack([model.encode_spectrum_inputs(inputs)[0] for _ in range(mc)])
            model.spectrum_encoder.eval()
            mean = torch.nn.functional.normalize(runs.mean(0), dim=1)
            spread = (1.0 - (runs * mean[None]).sum(2)).mean(0).numpy()
    return emb, norm, torch.from_numpy(inputs.side), spread


def _fit_mlp(model: JointModel, feats: torch.Tensor, target: npt.NDArray[np.float32], seed: int) -> None:
    head = model.quality_head
    head.feature_mean.copy_(feats.mean(0))
    head.feature_std.copy_(feats.std(0).clamp_min(1e-4))
    torch.manual_seed(seed)
    for layer in head.mlp:
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    opt = torch.optim.AdamW(head.mlp.parameters(), lr=3e-3, weight_decay=1e-3)
    y = torch.from_numpy(target)
    with torch.enable_grad():
        for _ in range(400):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(head.mlp_score(feats), y)
            loss.backward()
            opt.step()


def _pair_rmse(err2: npt.NDArray[np.float32], kept: npt.NDArray[np.bool_]) -> tuple[float, float]:
    k, f = err2[kept], err2[~kept]
    return (float(np.sqrt(k.mean())) if k.size else float("nan"),
            float(np.sqrt(f.mean())) if f.size else float("nan"))


def _spearman(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if a.shape[0] > 2 else float("nan")


def fit_quality(model: JointModel, data: PreparedData, config: TrainConfig) -> tuple[JointModel, dict[str, Any]]:
    """Choose, fit and install the quality estimate; return the model and a report of the comparison."""
    rng = np.random.default_rng([config.seed, 99])
    qconf = config.model.quality
    cal_rows = np.flatnonzero(data.spec_split == CALIB)
    ref_rows = np.flatnonzero((data.spec_split == TRAIN) & data.spec_clean)
    if cal_rows.shape[0] < MIN_CALIBRATION or ref_rows.shape[0] < qconf.n_reference:
        log.info(f"quality: {cal_rows.shape[0]} calibration spectra; keeping the peak-count fallback")
        return model, {"method": "peaks", "note": "too little calibration data to fit"}
    head = model.quality_head
    ref_emb, _, _, _ = _embed(model, data, rng.choice(ref_rows, qconf.n_reference, replace=False))
    head.reference.copy_(ref_emb)

    partners, tani = _partners(data, cal_rows, ref_rows, rng)
    p_rows, p_inv = np.unique(partners, return_inverse=True)
    p_emb = _embed(model, data, p_rows)[0].numpy()[p_inv.reshape(partners.shape)]
    emb, norm, side, spread = _embed(model, data, cal_rows, mc=8)
    err2 = ((np.einsum("nd,npd->np", emb.numpy(), p_emb) - tani) ** 2).astype(np.float32)
    target = np.sqrt(err2.mean(1)).astype(np.float32)
    with torch.no_grad():
        feats = head.features(emb, norm, side)
        scores = {"peaks": side[:, 3].numpy(), "knn": head.knn_similarity(emb).numpy(), "mc_dropout": -spread}

    # split calibration structures in two halves: fit on A, compare on B
    structs = np.unique(data.spec_struct[cal_rows])
    half_b = np.isin(data.spec_struct[cal_rows], rng.choice(structs, structs.shape[0] // 2, replace=False))
    half_a = ~half_b
    _fit_mlp(model, feats[half_a], target[half_a], config.seed)
    with torch.no_grad():
        scores["mlp"] = -head.mlp_score(feats).numpy()        # higher = better, like the others
    report: dict[str, Any] = {"calibration_spectra": int(cal_rows.shape[0]),
                              "calibration_clean": int(data.spec_clean[cal_rows].sum()),
                              "flag_share": FLAG_SHARE, "target_rmse_mean": float(target.mean()),
                              "methods": {}}
    for name, score in scores.items():
        b_score, b_err = score[half_b], err2[half_b]
        cut = np.quantile(b_score, FLAG_SHARE)
        kept = np.repeat((b_score > cut)[:, None], N_PARTNERS, axis=1)
        kept_rmse, flagged_rmse = _pair_rmse(b_err, kept)
        report["methods"][name] = {"spearman_score_vs_error": _spearman(b_score, -target[half_b]),
                                   "kept_rmse": kept_rmse, "flagged_rmse": flagged_rmse,
                                   "all_rmse": float(np.sqrt(b_err.mean()))}
        log.info(f"quality: {name}: " + ", ".join(f"{k}={v:.4f}" for k, v in report["methods"][name].items()))
    shippable: tuple[QualityMethod, ...] = ("peaks", "knn", "mlp")
    chosen = min(shippable, key=lambda m: report["methods"][m]["kept_rmse"])
    report["method"] = chosen

    # refit the chosen method on the whole fold and install it
    if chosen == "mlp":
        _fit_mlp(model, feats, target, config.seed)
        with torch.no_grad():
            final_score = head.mlp_score(feats).numpy()
        xs, ys = isotonic(final_score.astype(np.float64), target.astype(np.float64), increasing=True)
    else:
        xs, ys = isotonic(scores[chosen].astype(np.float64), target.astype(np.float64), increasing=False)
    head.knots_x.copy_(torch.from_numpy(xs))
    head.knots_y.copy_(torch.from_numpy(ys))
    new_q = dataclasses.replace(qconf, method=chosen)
    model.config = dataclasses.replace(model.config, quality=new_q)
    head.config = new_q
    with torch.no_grad():
        quality = head(emb, norm, side).numpy()
    flagged = quality < new_q.threshold
    report["threshold"] = new_q.threshold
    report["calibration_flagged_share"] = float(flagged.mean())
    kept_rmse, flagged_rmse = _pair_rmse(err2, np.repeat(~flagged[:, None], N_PARTNERS, axis=1))
    report["calibration_kept_rmse"], report["calibration_flagged_rmse"] = kept_rmse, flagged_rmse
    log.info(f"quality: chose {chosen}; at threshold {new_q.threshold} it flags {flagged.mean():.1%} of calibration "
        f"spectra (pair RMSE kept {kept_rmse:.3f}, flagged {flagged_rmse:.3f})")
    return model, report
