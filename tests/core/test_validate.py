import numpy as np
import pytest

from engine.core.errors import InvalidRecordError
from engine.core.records import Spectrum
from engine.core.validate import REASONS, normalise_ion_mode, validate_spectrum


def make(mz: list[float], inten: list[float], **kw: object) -> Spectrum:
    base: dict[str, object] = {"precursor_mz": 300.0, "ion_mode": "positive", "charge": 1}
    base.update(kw)
    return Spectrum("s1", np.array(mz, dtype=np.float64), np.array(inten, dtype=np.float32),
                    **base)  # type: ignore[arg-type]


def reason_of(spectrum: Spectrum, **kw: object) -> str:
    with pytest.raises(InvalidRecordError) as info:
        validate_spectrum(spectrum, path="in.mgf", record="s1", **kw)  # type: ignore[arg-type]
    assert "in.mgf" in str(info.value) and "s1" in str(info.value)
    assert info.value.reason in REASONS
    return info.value.reason


def test_valid_spectrum_passes_unchanged() -> None:
    s = make([100.0, 200.0], [1.0, 2.0])
    assert validate_spectrum(s, path="x", record="1") is s


def test_unsorted_peaks_are_sorted_losslessly() -> None:
    s = validate_spectrum(make([200.0, 100.0, 150.0], [2.0, 1.0, 3.0]), path="x", record="1")
    assert s.mz.tolist() == [100.0, 150.0, 200.0]
    assert s.intensity.tolist() == [1.0, 3.0, 2.0]


@pytest.mark.parametrize(("spectrum", "reason"), [
    (make([], []), "empty_spectrum"),
    (make([100.0, np.nan], [1.0, 1.0]), "non_finite_values"),
    (make([100.0, 200.0], [1.0, np.inf]), "non_finite_values"),
    (make([100.0, 200.0], [1.0, -1.0]), "negative_values"),
    (make([100.0, 100.0], [1.0, 2.0]), "duplicate_mz"),
    (make([100.0], [1.0], precursor_mz=None), "missing_precursor"),
    (make([100.0], [1.0], precursor_mz=-5.0), "invalid_precursor"),
    (make([100.0], [1.0], charge=0), "invalid_charge"),
    (make([100.0], [1.0], ion_mode="neutral"), "unknown_ion_mode"),
    (make([100.0], [1.0], adduct="[M+Qq]+"), "unknown_adduct"),
    (make([100.0], [1.0], ion_mode=None, charge=None), "missing_ion_mode"),
])
def test_bad_spectra_have_reasons(spectrum: Spectrum, reason: str) -> None:
    assert reason_of(spectrum) == reason


def test_ion_mode_inferred_from_charge_adduct_or_default() -> None:
    neg = validate_spectrum(make([100.0], [1.0], ion_mode=None, charge=-1), path="x", record="1")
    assert neg.ion_mode == "negative"
    add = validate_spectrum(make([100.0], [1.0], ion_mode=None, charge=None, adduct="[M-H]-"),
                            path="x", record="1")
    assert add.ion_mode == "negative"
    dflt = validate_spectrum(make([100.0], [1.0], ion_mode=None, charge=None), path="x", record="1",
                             default_ion_mode="positive")
    assert dflt.ion_mode == "positive"


def test_normalise_ion_mode_spellings() -> None:
    assert normalise_ion_mode("POSITIVE") == "positive"
    assert normalise_ion_mode("neg") == "negative"
    assert normalise_ion_mode("") is None
    assert normalise_ion_mode("weird") == "weird"


def test_validate_many_agrees_with_validate_spectrum() -> None:
    from engine.core.validate import validate_many

    cases = [
        make([100.0, 200.0], [1.0, 2.0]), make([200.0, 100.0], [1.0, 2.0]), make([], []),
        make([100.0, np.nan], [1.0, 1.0]), make([100.0, 100.0], [1.0, 2.0]), make([100.0], [-1.0]),
        make([100.0], [1.0], precursor_mz=None), make([100.0], [1.0], charge=0),
        make([100.0], [1.0], ion_mode=None, charge=-1), make([100.0], [1.0], adduct="[M+Qq]+"),
        make([50.0, 60.0], [1.0, 1.0], adduct="[M+Na]+"), make([100.0], [1.0], ion_mode="weird"),
    ]
    got = validate_many(cases, path="f.mgf", records=[str(i) for i in range(len(cases))])
    for i, (spectrum, result) in enumerate(zip(cases, got, strict=True)):
        try:
            expected: object = validate_spectrum(spectrum, path="f.mgf", record=str(i))
        except InvalidRecordError as err:
            assert isinstance(result, InvalidRecordError) and result.reason == err.reason
            continue
        assert isinstance(result, Spectrum)
        assert result.mz.tolist() == expected.mz.tolist()  # type: ignore[attr-defined]
        assert result.ion_mode == expected.ion_mode  # type: ignore[attr-defined]
