"""Training on the tiny fixture: data preparation, losses, resume after interruption, model export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.models.model import load_model, model_pipeline
from engine.models.training.data import TRAIN, VAL, prepare_data
from engine.models.training.loop import learning_rate, train
from engine.models.training.metrics import binned_rmse, hit_rates, rank_of_true
from engine.models.training.sampling import Sampler
from tests.training.conftest import tiny_config


def test_prepared_data(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    data = prepare_data(config.data, model_pipeline())
    assert data.n_structures == 16
    assert set(np.unique(data.struct_split).tolist()) == {TRAIN, VAL}
    assert data.fingerprint_bits().shape == (16, 2048)
    assert len(data.graphs()) > data.n_structures                  # structures + hard negatives
    train_rows = np.flatnonzero(data.struct_split == TRAIN)
    pools = [data.neg_rows[data.neg_ptr[s]:data.neg_ptr[s + 1]] for s in train_rows]
    assert all(p.shape[0] > 0 for p in pools) and all((p >= data.n_structures).all() for p in pools)
    # the cache is reused
    again = prepare_data(config.data, model_pipeline())
    np.testing.assert_array_equal(again.spec_ptr, data.spec_ptr)


def test_sampler_balances_pairs(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    data = prepare_data(config.data, model_pipeline())
    from engine.models.training.loop import _train_tanimoto

    tani = _train_tanimoto(data)
    sampler = Sampler(data, tani, batch_structures=4, hard_negatives=2)
    batches = list(sampler.epoch(np.random.default_rng(0)))
    assert len(batches) == len(sampler) == 3
    b = batches[0]
    assert b.molecules.shape[0] == 4 + 8
    np.testing.assert_allclose(b.pair_tanimoto, tani[b.anchors, b.partners].astype(np.float32))
    assert (data.spec_struct[b.spectra] == sampler.train_structs[b.anchors]).all()


def test_resume_gives_the_same_model(tmp_path: Path) -> None:
    full = train(tiny_config(tmp_path, name="full"), progress=False)
    part = train(tiny_config(tmp_path, name="part"), progress=False, stop_after_epochs=1)
    assert len(part.history) == 1 and not part.model_path.exists()
    resumed = train(tiny_config(tmp_path, name="part"), progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert load_model(full.model_path).encoder_hash == load_model(resumed.model_path).encoder_hash


def test_trained_model_exports(trained_tiny) -> None:  # type: ignore[no-untyped-def]
    assert trained_tiny.model_path.exists()
    model = load_model(trained_tiny.model_path)
    assert model.dim == 16
    assert model.extra["training"]["epochs"] == 2
    assert set(trained_tiny.history[-1]) >= {"contrastive", "tanimoto", "val_hit_rate@1", "val_tanimoto_rmse"}


def test_learning_rate_schedule() -> None:
    config = tiny_config(Path("."), epochs=10)
    rates = [learning_rate(s, 10, config) for s in range(100)]
    assert rates[9] == config.train.lr and max(rates) <= config.train.lr
    assert rates[-1] < 0.1 * config.train.lr


def test_metrics() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]], np.float32)
    ranks = rank_of_true(scores, np.array([0, 1]))
    assert ranks.tolist() == [1, 2]
    assert hit_rates(ranks, (1, 2)) == {"hit_rate@1": 0.5, "hit_rate@2": 1.0}
    out = binned_rmse(np.array([0.1, 0.5], np.float32), np.array([0.0, 0.95], np.float32))
    assert out["per_bin"][0]["pairs"] == 1 and abs(out["per_bin"][9]["rmse"] - 0.45) < 1e-6


def test_train_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from engine.commands.cli import main
    from tests.training.conftest import FIXTURES

    toml = tmp_path / "tiny.toml"
    toml.write_text(f"""
name = "cli"
seed = 1
out_dir = "{tmp_path}"
[data]
spectra = "{FIXTURES / 'massbank_tiny.parquet'}"
candidates = "{FIXTURES / 'candidates_tiny.parquet'}"
calibration_fraction = 0.0
negative_pool = 4
mass_neighbours = 16
cache_dir = "{tmp_path / 'cache'}"
[model]
dim = 8
[model.spectrum]
bag_dim = 8
hidden_dims = [8]
[model.molecule]
hidden_dim = 8
n_layers = 1
head_dim = 8
[model.quality]
n_reference = 8
k = 2
[train]
epochs = 1
batch_structures = 4
hard_negatives = 1
val_max_spectra = 20
val_pairs = 20
""")
    export = tmp_path / "exported.pt"
    result = CliRunner().invoke(main, ["train", "--config", str(toml), "--export", str(export)])
    assert result.exit_code == 0, result.output
    assert load_model(export).dim == 8
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 1\nunknown_key = 3\n")
    result = CliRunner().invoke(main, ["train", "--config", str(bad)])
    assert result.exit_code != 0 and "unknown_key" in result.output


def test_candidate_listwise_loss_is_cross_entropy_over_own_negatives() -> None:
    from torch.nn import functional as F  # noqa: N812

    from engine.models.training.losses import candidate_listwise

    gen = torch.Generator().manual_seed(0)
    spec = F.normalize(torch.randn(3, 8, generator=gen), dim=1)
    mol = F.normalize(torch.randn(3 + 4, 8, generator=gen), dim=1)
    owner = torch.tensor([0, 0, 2, 2])     # spectrum 1 has no negatives of its own
    scale = torch.tensor(10.0)
    expected = []
    for i, negs in ((0, [3, 4]), (1, []), (2, [5, 6])):
        logits = scale * torch.stack([spec[i] @ mol[j] for j in [i, *negs]])
        expected.append(F.cross_entropy(logits[None], torch.tensor([0])))
    got = candidate_listwise(spec, mol, owner, scale)
    assert torch.allclose(got, torch.stack(expected).mean(), atol=1e-6)
    assert float(candidate_listwise(spec, mol[:3], torch.zeros(0, dtype=torch.long), scale)) == 0.0


def test_fine_tune_starts_from_a_checkpoint(trained_tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    base = tiny_config(tmp_path, name="tuned", epochs=1)
    config = dataclasses.replace(base, train=dataclasses.replace(
        base.train, init_from=str(trained_tiny.model_path), weight_candidates=1.0, lr=0.0))
    tuned = train(config, progress=False)
    assert tuned.history[-1]["candidates"] > 0
    start = load_model(trained_tiny.model_path)
    for name, value in start.state_dict().items():   # lr 0: the weights stay those of the checkpoint
        if not name.startswith("quality"):
            assert torch.allclose(tuned.model.state_dict()[name].float(), value.float(), atol=1e-3), name
    other = dataclasses.replace(config, model=dataclasses.replace(config.model, dim=8), name="other")
    with pytest.raises(ValueError, match="init_from"):
        train(other, progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_runs_on_the_gpu(tmp_path: Path) -> None:
    """train.device = cuda: one epoch on the GPU, finite losses, a CPU checkpoint any machine can open."""
    import dataclasses

    config = tiny_config(tmp_path, name="gpu", epochs=1)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, device="cuda"))
    result = train(config, progress=False)
    assert np.isfinite(result.history[-1]["loss"])
    assert load_model(result.model_path).device.type == "cpu"


def test_molecule_pretraining_learns_fingerprints_of_molecules_outside_massbank(tmp_path: Path) -> None:
    """[pretrain]: the GNN first fits fingerprint bits and Tanimoto of candidates that are none of the
    spectra's structures; its held-out fit improves, the report reaches the model card, and a resumed run
    takes the kept weights instead of pretraining again."""
    import dataclasses

    import pyarrow.parquet as pq

    from engine.models.model import JointModel
    from engine.models.training.config import PretrainSettings
    from engine.models.training.pretrain import PRETRAINED_FILE, pretrain_molecule_encoder, pretraining_molecules

    settings = PretrainSettings(molecules=240, held_out=48, epochs=6, batch_molecules=24, lr=3e-3)
    config = dataclasses.replace(tiny_config(tmp_path, name="pre", epochs=1), pretrain=settings)
    smiles = pretraining_molecules(config.data.candidates, config.data.spectra, settings, seed=config.seed)
    cands = pq.read_table(config.data.candidates, columns=["smiles", "inchikey14"]).to_pylist()
    massbank = set(pq.read_table(config.data.spectra, columns=["inchikey14"]).column(0).to_pylist())
    key_of = {r["smiles"]: r["inchikey14"] for r in cands}
    assert len(smiles) == 288 and not {key_of[s] for s in smiles} & massbank

    result = train(config, progress=False)
    report = load_model(result.model_path).extra["training"]["molecule_pretraining"]
    assert report["molecules"] == 240 and report["held_out"] == 48
    last = report["history"][-1]
    assert last["held_out_tanimoto_rmse"] < report["before"]["held_out_tanimoto_rmse"]
    assert last["held_out_fingerprint_bce"] < report["before"]["held_out_fingerprint_bce"]

    kept = torch.load(result.run_dir / PRETRAINED_FILE, weights_only=True)["encoder"]
    fresh = JointModel(config.model, model_pipeline())
    assert pretrain_molecule_encoder(fresh, config, result.run_dir, progress=False) == report
    for name, value in fresh.molecule_encoder.state_dict().items():
        assert torch.equal(value, kept[name]), name
