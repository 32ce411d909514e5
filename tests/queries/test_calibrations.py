"""The shipped search calibrations belong to the bundled model (refit them after retraining it)."""

from __future__ import annotations

from engine.models.calibration import CALIBRATION_DIR, Calibration
from engine.queries.analogue import ANALOGUE_RANKER, ANALOGUE_SCALE, analogue_score_model
from engine.queries.identity import IDENTITY_RANKER, IDENTITY_SCALE, identity_score_model


def test_calibrations_match_the_bundled_model() -> None:
    from engine.models.model import DEFAULT_MODEL

    assert DEFAULT_MODEL.exists(), "the bundled model is missing"
    from engine.models.checkpoint import load_checkpoint

    model_hash = load_checkpoint(DEFAULT_MODEL)["content_hash"]
    for name in (IDENTITY_RANKER, IDENTITY_SCALE, ANALOGUE_RANKER, ANALOGUE_SCALE):
        cal = Calibration.from_json((CALIBRATION_DIR / f"{name}.json").read_text())
        assert cal.encoder_hash == model_hash, (
            f"{name}.json was fitted for encoder {cal.encoder_hash}, the bundled model is {model_hash}: "
            "run `python -m benchmarks.search.calibrate`")
    ident = identity_score_model(model_hash)
    assert ident.ranker is not None and ident.ranker.name == IDENTITY_RANKER
    ana = analogue_score_model(model_hash)
    assert ana.ranker is not None and ana.scale is not None
    assert "quality" in ana.scale.features  # the reliability falls for low-quality embeddings
    assert ana.scale.coef[ana.scale.features.index("quality")] > 0
    # the model-free fallback exists for other models
    assert identity_score_model("another-model").ranker is not None
