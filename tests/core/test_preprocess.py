import numpy as np
import pytest

from engine.core.preprocess import (
    Pipeline,
    default_pipeline,
    relative_intensity_floor,
    remove_precursor_peak,
    require_min_peaks,
    select_mz_range,
    top_n_peaks,
    transform_intensity,
)
from engine.core.records import Spectrum


@pytest.fixture
def spectrum() -> Spectrum:
    mz = np.array([5.0, 50.0, 100.0, 150.0, 299.5, 1200.0])
    inten = np.array([10.0, 1000.0, 0.5, 400.0, 50.0, 30.0], dtype=np.float32)
    return Spectrum("s", mz, inten, precursor_mz=300.0, ion_mode="positive")


def test_filters_are_pure(spectrum: Spectrum) -> None:
    before = spectrum.mz.copy()
    out = select_mz_range(spectrum, mz_from=10, mz_to=1000)
    assert out.mz.tolist() == [50.0, 100.0, 150.0, 299.5]
    assert spectrum.mz.tolist() == before.tolist()


def test_each_filter(spectrum: Spectrum) -> None:
    assert remove_precursor_peak(spectrum, tolerance_da=1.6).mz.max() == 150.0
    assert 100.0 not in relative_intensity_floor(spectrum, floor=0.01).mz
    top = top_n_peaks(spectrum, n=2)
    assert top.mz.tolist() == [50.0, 150.0]
    t = transform_intensity(spectrum, transform="sqrt")
    assert t.intensity.max() == pytest.approx(1.0)
    assert t.intensity[3] == pytest.approx(np.sqrt(0.4), rel=1e-5)
    assert require_min_peaks(spectrum, n=7) is None
    assert require_min_peaks(spectrum, n=6) is spectrum


def test_pipeline_is_data_and_round_trips(spectrum: Spectrum) -> None:
    pipe = Pipeline((("select_mz_range", {"mz_from": 10.0, "mz_to": 1000.0}), ("require_min_peaks", {"n": 5})))
    assert pipe(spectrum) is None  # 4 peaks left
    again = Pipeline.from_dict(pipe.to_dict())
    assert again == pipe and again.digest() == pipe.digest()
    assert default_pipeline().digest() != pipe.digest()
    with pytest.raises(ValueError, match="unknown filter"):
        Pipeline((("no_such_filter", {}),))
