"""Calibrated Tanimoto from the cosine of two spectrum embeddings.

The model is trained so that the cosine of two spectrum embeddings regresses the Tanimoto of their
structures, but the raw cosine is mis-scaled at the top and across ion modes. A :class:`TanimotoMap`
is one monotone (isotonic) piecewise-linear map ``cosine -> Tanimoto`` per *mode pairing*
(``positive`` = both positive, ``negative`` = both negative, ``cross`` = one of each), a few dozen knots
each, fitted by :func:`fit_tanimoto_map` with every 0.1-wide Tanimoto bin weighted equally, on spectrum
pairs drawn evenly over the bins by :func:`balanced_pairs` (:func:`fit_from_embeddings` does both).

The fitted map lives in ``engine/data/calibration/tanimoto_map.json`` with the encoder hash of the model
whose embeddings it was fitted on (refit with ``tools/fit_tanimoto_map.py``). :func:`load_tanimoto_map`
returns ``None`` for another model, and :func:`predict_tanimoto` then falls back to the raw cosine
clipped to 0..1.

Ion modes are given as strings (``"positive"`` / ``"negative"``, any case, prefix ``pos`` / ``neg``)
or booleans (``True`` = positive); a missing mode (``None``) counts as positive, as the spectrum encoder
treats it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.models.calibration import CALIBRATION_DIR

#: Mode pairings, in the order of the codes returned by :func:`mode_pairing`.
PAIRINGS = ("positive", "negative", "cross")
MAP_NAME = "tanimoto_map"
N_BINS = 10

ModeLike = str | bool | None | Sequence[str | bool | None] | npt.NDArray[Any]


def positive_mask(ion_mode: ModeLike, n: int) -> npt.NDArray[np.bool_]:
    """``True`` where the ion mode is positive, broadcast to ``n`` rows (see module docs for accepted values)."""
    arr = np.asarray(ion_mode, dtype=object)
    if arr.ndim == 0:
        arr = np.full(n, arr.item(), dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"ion modes: expected {n} values, got shape {arr.shape}")
    out = np.empty(n, dtype=bool)
    for i, mode in enumerate(arr):
        if mode is None or isinstance(mode, bool | np.bool_):
            out[i] = True if mode is None else bool(mode)
            continue
        text = str(mode).strip().lower()
        if text.startswith("pos") or text == "+":
            out[i] = True
        elif text.startswith("neg") or text == "-":
            out[i] = False
        else:
            raise ValueError(f"unknown ion mode {mode!r} (expected 'positive' or 'negative')")
    return out


def mode_pairing(positive_a: npt.ArrayLike, positive_b: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """Code per pair: 0 both positive, 1 both negative, 2 cross-mode (index into :data:`PAIRINGS`)."""
    a = np.asarray(positive_a, dtype=bool)
    b = np.asarray(positive_b, dtype=bool)
    return np.where(a != b, 2, np.where(a, 0, 1)).astype(np.int8)


@dataclass(frozen=True)
class TanimotoMap:
    """Monotone piecewise-linear ``cosine -> Tanimoto`` maps per mode pairing (constant beyond the ends)."""

    encoder_hash: str
    cosine: dict[str, tuple[float, ...]]
    tanimoto: dict[str, tuple[float, ...]]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in PAIRINGS:
            if name not in self.cosine or name not in self.tanimoto:
                raise ValueError(f"Tanimoto map lacks the {name!r} mode pairing")
            xs, ys = np.asarray(self.cosine[name]), np.asarray(self.tanimoto[name])
            if xs.shape != ys.shape or xs.shape[0] < 2:
                raise ValueError(f"Tanimoto map {name!r}: need >= 2 knots with one value each")
            if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0):
                raise ValueError(f"Tanimoto map {name!r}: knots must increase and values must not decrease")

    def apply(self, cosine: npt.ArrayLike, pairing: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Predicted Tanimoto for cosines and pairing codes (see :func:`mode_pairing`) of equal shape."""
        cos = np.asarray(cosine, dtype=np.float64)
        code = np.broadcast_to(np.asarray(pairing), cos.shape)
        out = np.empty(cos.shape, dtype=np.float64)
        for k, name in enumerate(PAIRINGS):
            sel = code == k
            if sel.any():
                out[sel] = np.interp(cos[sel], self.cosine[name], self.tanimoto[name])
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def to_json(self) -> str:
        data = {"name": MAP_NAME, "kind": "isotonic cosine -> Tanimoto per mode pairing",
                "encoder_hash": self.encoder_hash,
                "maps": {p: {"cosine": list(self.cosine[p]), "tanimoto": list(self.tanimoto[p])}
                         for p in PAIRINGS},
                "info": self.info}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TanimotoMap:
        data = json.loads(text)
        maps = data["maps"]
        return cls(encoder_hash=str(data["encoder_hash"]),
                   cosine={p: tuple(float(v) for v in maps[p]["cosine"]) for p in PAIRINGS},
                   tanimoto={p: tuple(float(v) for v in maps[p]["tanimoto"]) for p in PAIRINGS},
                   info=dict(data.get("info", {})))

    def save(self, path: str | Path | None = None) -> Path:
        out = Path(path) if path is not None else CALIBRATION_DIR / f"{MAP_NAME}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json())
        return out


def load_tanimoto_map(encoder_hash: str | None, *, directory: str | Path | None = None) -> TanimotoMap | None:
    """The stored map when it was fitted for ``encoder_hash``; ``None`` when absent or for another model."""
    file = (Path(directory) if directory is not None else CALIBRATION_DIR) / f"{MAP_NAME}.json"
    if encoder_hash is None or not file.is_file():
        return None
    tmap = TanimotoMap.from_json(file.read_text())
    return tmap if tmap.encoder_hash == encoder_hash else None


def predict_tanimoto(emb_a: npt.ArrayLike, emb_b: npt.ArrayLike, ion_mode_a: ModeLike, ion_mode_b: ModeLike,
                     encoder_hash: str | None, *, tanimoto_map: TanimotoMap | None = None,
                     directory: str | Path | None = None) -> npt.NDArray[np.float32]:
    """Predicted Tanimoto of the structures behind spectrum pairs ``(emb_a[i], emb_b[i])``.

    ``emb_a`` / ``emb_b`` are ``[n, dim]`` unit-length embeddings (one row each broadcasts); ion modes are
    one value or ``n`` values. Uses ``tanimoto_map`` when given, else the stored map for ``encoder_hash``;
    a map of another encoder hash is ignored and the prediction is ``clip(cosine, 0, 1)``.
    """
    a = np.atleast_2d(np.asarray(emb_a, dtype=np.float32))
    b = np.atleast_2d(np.asarray(emb_b, dtype=np.float32))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    cosine = np.einsum("ij,ij->i", *np.broadcast_arrays(a, b))
    n = cosine.shape[0]
    tmap = tanimoto_map if tanimoto_map is not None else load_tanimoto_map(encoder_hash, directory=directory)
    if tmap is not None and tmap.encoder_hash != encoder_hash:
        tmap = None
    if tmap is None:
        return np.clip(cosine, 0.0, 1.0).astype(np.float32)
    return tmap.apply(cosine, mode_pairing(positive_mask(ion_mode_a, n), positive_mask(ion_mode_b, n)))


def bin_of(tanimoto: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """0.1-wide Tanimoto bin (0..9; 1.0 falls in bin 9)."""
    return np.minimum((np.asarray(tanimoto, dtype=np.float64) * N_BINS).astype(np.int64), N_BINS - 1)


def isotonic_knots(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], weight: npt.NDArray[np.float64],
                   n_knots: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Weighted monotone (non-decreasing) fit of ``y`` on ``x`` as at most ``n_knots`` knots.

    ``x`` is cut into groups of equal total weight; each group gives a knot at its weighted mean ``x``
    with its weighted mean ``y``, and pool-adjacent-violators makes the values non-decreasing.
    """
    order = np.argsort(x, kind="stable")
    xs, ys, ws = x[order], y[order], weight[order]
    cum = np.cumsum(ws)
    group = np.minimum((cum - 0.5 * ws) / cum[-1] * n_knots, n_knots - 1).astype(np.int64)
    gw = np.bincount(group, weights=ws, minlength=n_knots)
    used = gw > 0
    gx = (np.bincount(group, weights=ws * xs, minlength=n_knots)[used] / gw[used])
    gy = (np.bincount(group, weights=ws * ys, minlength=n_knots)[used] / gw[used])
    gw = gw[used]
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for v, w in zip(gy.tolist(), gw.tolist(), strict=True):
        values.append(v)
        weights.append(w)
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w2 = weights[-2] + weights[-1]
            values[-2:] = [(values[-2] * weights[-2] + values[-1] * weights[-1]) / w2]
            weights[-2:] = [w2]
            sizes[-2:] = [sizes[-2] + sizes[-1]]
    fitted = np.repeat(np.asarray(values), np.asarray(sizes))
    # knots must strictly increase: merge groups that share an x (ties), keeping the larger value
    keep = np.concatenate([np.diff(gx) > 1e-5, [True]])
    return gx[keep], fitted[keep]


def fit_tanimoto_map(cosine: npt.ArrayLike, tanimoto: npt.ArrayLike, pairing: npt.ArrayLike, *,
                     encoder_hash: str, n_knots: int = 32, info: dict[str, Any] | None = None) -> TanimotoMap:
    """Fit one isotonic map per mode pairing; within a pairing every Tanimoto bin has equal total weight.

    ``pairing`` holds :func:`mode_pairing` codes. Every pairing needs pairs in at least two bins.
    """
    if n_knots < 2:
        raise ValueError("n_knots must be >= 2")
    cos = np.asarray(cosine, dtype=np.float64)
    tani = np.asarray(tanimoto, dtype=np.float64)
    code = np.asarray(pairing)
    bins = bin_of(tani)
    xs: dict[str, tuple[float, ...]] = {}
    ys: dict[str, tuple[float, ...]] = {}
    counts: dict[str, list[int]] = {}
    for k, name in enumerate(PAIRINGS):
        sel = code == k
        per_bin = np.bincount(bins[sel], minlength=N_BINS)
        if (per_bin > 0).sum() < 2:
            raise ValueError(f"too few pairs to fit the {name!r} map (bins with pairs: {per_bin.tolist()})")
        weight = 1.0 / per_bin[bins[sel]]
        kx, ky = isotonic_knots(cos[sel], tani[sel], weight, n_knots)
        xs[name] = tuple(round(float(v), 6) for v in kx)
        ys[name] = tuple(round(float(v), 6) for v in ky)
        counts[name] = per_bin.tolist()
    meta = {"n_knots": n_knots, "pairs_per_bin": counts, **(info or {})}
    return TanimotoMap(encoder_hash=encoder_hash, cosine=xs, tanimoto=ys, info=meta)


def pair_weights(n_pos: npt.NDArray[np.int64], n_neg: npt.NDArray[np.int64], pairing: str
                 ) -> npt.NDArray[np.float64]:
    """Number of distinct spectrum pairs of each structure pair (s <= t) with the given mode pairing."""
    p, q = n_pos.astype(np.float64), n_neg.astype(np.float64)
    if pairing == "cross":
        w = np.outer(p, q) + np.outer(q, p)
        np.fill_diagonal(w, p * q)
    else:
        c = p if pairing == "positive" else q
        w = np.outer(c, c)
        np.fill_diagonal(w, c * (c - 1) / 2)
    return np.triu(w)


def balanced_pairs(struct: npt.NDArray[np.int64], positive: npt.NDArray[np.bool_], tani: npt.NDArray[np.float32],
                   per_bin: int, rng: np.random.Generator) -> dict[str, tuple[npt.NDArray[np.int64], ...]]:
    """Per pairing, spectrum index arrays ``(a, b)``: up to ``per_bin`` pairs per Tanimoto bin, uniform over
    the distinct spectrum pairs of that bin and pairing (structure pair drawn by its pair count, then
    spectra uniformly within it)."""
    n_struct = tani.shape[0]
    # spectra sorted by (mode, structure): members of (mode, s) are order[start[mode][s]: + count[mode][s]]
    order = np.lexsort((struct, ~positive))
    count = {m: np.bincount(struct[positive == (m == "positive")], minlength=n_struct)
             for m in ("positive", "negative")}
    start = {"positive": np.concatenate([[0], np.cumsum(count["positive"])[:-1]]),
             "negative": int(count["positive"].sum()) + np.concatenate([[0], np.cumsum(count["negative"])[:-1]])}

    def pick(mode: str, s: npt.NDArray[np.int64], skip: npt.NDArray[np.int64] | None = None) -> npt.NDArray[np.int64]:
        c = count[mode][s] - (0 if skip is None else 1)
        k = np.floor(rng.random(s.shape[0]) * c).astype(np.int64)
        if skip is not None:
            k += k >= skip
        return k

    bins = bin_of(tani)
    out: dict[str, tuple[npt.NDArray[np.int64], ...]] = {}
    for pairing in PAIRINGS:
        w = pair_weights(count["positive"], count["negative"], pairing)
        a_all, b_all = [], []
        for b in range(N_BINS):
            wb = np.where(bins == b, w, 0.0).ravel()
            total = wb.sum()
            if total <= 0:
                continue
            cells = rng.choice(wb.shape[0], size=int(min(per_bin, total)), p=wb / total)
            s, t = np.divmod(cells, n_struct)
            if pairing == "cross":
                # (positive of s, negative of t) or (negative of s, positive of t), by their pair counts
                fwd = count["positive"][s] * count["negative"][t]
                bwd = np.where(s == t, 0, count["negative"][s] * count["positive"][t])
                first_pos = rng.random(s.shape[0]) * (fwd + bwd) < fwd
                mode_a = np.where(first_pos, 0, 1)
                ka = np.where(first_pos, pick("positive", s), pick("negative", s))
                kb = np.where(first_pos, pick("negative", t), pick("positive", t))
                ia = np.where(mode_a == 0, start["positive"][s], start["negative"][s]) + ka
                ib = np.where(mode_a == 0, start["negative"][t], start["positive"][t]) + kb
            else:
                ka = pick(pairing, s)
                kb = np.where(s == t, pick(pairing, t, skip=ka), pick(pairing, t))
                ia, ib = start[pairing][s] + ka, start[pairing][t] + kb
            a_all.append(order[ia])
            b_all.append(order[ib])
        out[pairing] = (np.concatenate(a_all).astype(np.int64), np.concatenate(b_all).astype(np.int64))
    return out


def fit_from_embeddings(emb: npt.NDArray[np.float32], struct: npt.NDArray[np.int64], tani: npt.NDArray[np.float32],
                 positive: npt.NDArray[np.bool_], *, encoder_hash: str, per_bin: int = 20_000, n_knots: int = 32,
                 seed: int = 0, info: dict[str, Any] | None = None) -> TanimotoMap:
    """Fit a map from spectrum embeddings: :func:`balanced_pairs` (seeded), then :func:`fit_tanimoto_map`.

    ``struct`` indexes rows of the structure Tanimoto matrix ``tani`` for every spectrum."""
    rng = np.random.default_rng(seed)
    pairs = balanced_pairs(struct, positive, tani, per_bin, rng)
    cos, tan, code = [], [], []
    for k, name in enumerate(PAIRINGS):
        a, b = pairs[name]
        cos.append(np.einsum("ij,ij->i", emb[a], emb[b]))
        tan.append(tani[struct[a], struct[b]])
        code.append(np.full(a.shape[0], k, np.int8))
    return fit_tanimoto_map(np.concatenate(cos), np.concatenate(tan), np.concatenate(code),
                            encoder_hash=encoder_hash, n_knots=n_knots,
                            info={"per_bin": per_bin, "seed": seed, **(info or {})})


__all__ = ["MAP_NAME", "PAIRINGS", "TanimotoMap", "balanced_pairs", "bin_of", "fit_from_embeddings",
           "fit_tanimoto_map", "isotonic_knots",
           "load_tanimoto_map", "mode_pairing", "positive_mask", "predict_tanimoto"]
