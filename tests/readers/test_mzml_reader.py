"""The mzML / mzXML readers on real runs, checked against an independent lxml parse and, field by field, against
the earlier pyteomics-based readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reader_helpers import BAD, LOCAL_RAW, SHARED_RAW, independent_ms2, raw_files, spectra_and_errors

from engine.core.errors import FileFormatError
from engine.core.records import Spectrum
from engine.io.readers import read_file
from engine.io.readers.centroid import centroid_profile
from engine.io.readers.mzml import read_mzml, read_mzxml


@pytest.mark.parametrize("path", raw_files(), ids=lambda p: p.name)
def test_ms2_count_and_precursors_match_an_independent_parse(path: Path) -> None:
    from pyteomics import mzml, mzxml

    expected = independent_ms2(path)
    spectra, errors = spectra_and_errors(read_file(path))
    assert not errors
    assert len(spectra) == len(expected)
    module = mzxml if path.suffix == ".mzXML" else mzml
    level_key = "msLevel" if path.suffix == ".mzXML" else "ms level"
    with module.read(str(path), decode_binary=False) as reader:
        assert sum(1 for scan in reader if scan.get(level_key) == 2) == len(spectra)
    assert [s.precursor_mz for s in spectra] == pytest.approx([p for _, p in expected], abs=1e-9)
    if path.suffix == ".mzML":
        assert [s.native_id for s in spectra] == [i for i, _ in expected]
    else:
        assert [str(s.scan) for s in spectra] == [i for i, _ in expected]
    for s in spectra:
        assert s.ms_level == 2 and s.ion_mode in ("positive", "negative")
        assert s.mz.dtype == np.float64 and s.intensity.dtype == np.float32 and s.mz.shape == s.intensity.shape
        assert s.retention_time is not None and 0 <= s.retention_time < 3 * 3600
        assert s.spectrum_id.startswith(path.name + ":")


@pytest.mark.slow
def test_every_shared_raw_file_reads() -> None:
    """All of ../shared/data/raw, MS1-only and MS-Numpress (pol_switch_a) included."""
    if not SHARED_RAW.is_dir():
        pytest.skip("../shared/data/raw is not present")
    expected = {"GNPSExport_mzml1.mzML": 319, "GNPSExport_mzml2.mzML": 285, "DOM_b.mzXML": 434,
                "171103_PMA_TK_QC_04-4to5min.mzML": 381, "small_mzml.mzML": 331, "matchms_testdata.mzML": 10,
                "matchms_testdata.mzXML": 1, "AssayGeneratorMetabo_input.mzML": 213,
                "SiriusAdapter_4_input.mzML": 47, "pol_switch_a.mzML": 0}
    for name, count in expected.items():
        spectra, errors = spectra_and_errors(read_file(SHARED_RAW / name))
        assert (len(spectra), errors) == (count, []), name


def test_mzml_fields() -> None:
    spectra = list(read_mzml(LOCAL_RAW / "SiriusAdapter_4_input.mzML"))
    s = spectra[0]
    assert isinstance(s, Spectrum)
    assert s.native_id == "controllerType=0 controllerNumber=1 scan=5064" and s.scan == 5064
    assert s.spectrum_id == "SiriusAdapter_4_input.mzML:controllerType=0 controllerNumber=1 scan=5064"
    assert (s.precursor_mz, s.charge, s.ion_mode) == (409.114078518168, 1, "negative")
    assert s.retention_time == pytest.approx(635.15886)  # seconds in the file
    assert s.collision_energy == "40.0"
    assert s.metadata["filter_string"].startswith("FTMS - c ESI")
    assert s.metadata["precursor_intensity"] == "657895.8125"


def test_minutes_become_seconds_and_isolation_window_precursors() -> None:
    (first, *_) = read_mzml(LOCAL_RAW / "synthetic_profile_numpress.mzML")
    assert first.retention_time == pytest.approx(1.51 * 60)  # type: ignore[union-attr]
    sciex = next(iter(read_mzml(LOCAL_RAW / "AssayGeneratorMetabo_input.mzML")))
    assert isinstance(sciex, Spectrum)
    assert sciex.precursor_mz == pytest.approx(132.04403542171)  # no selected ion: isolation window target
    assert sciex.scan is None and sciex.native_id == "sample=1 period=1 cycle=657 experiment=2"


def test_usi_with_dataset() -> None:
    (s, *_) = read_mzml(LOCAL_RAW / "matchms_testdata.mzML", dataset="MSV000084630")
    assert s.spectrum_id == "mzspec:MSV000084630:matchms_testdata:scan:2"  # type: ignore[union-attr]
    (t, *_) = read_mzml(LOCAL_RAW / "AssayGeneratorMetabo_input.mzML", dataset="MSV000084630")
    assert t.spectrum_id == "mzspec:MSV000084630:AssayGeneratorMetabo_input:index:1"  # type: ignore[union-attr]


def test_mzxml_ms3_skipped_polarity_and_minutes() -> None:
    spectra, errors = spectra_and_errors(read_mzxml(LOCAL_RAW / "matchms_testdata.mzXML"))
    assert not errors and len(spectra) == 1  # 1 MS1, 1 MS2, 3 MS3 scans in the file
    s = spectra[0]
    assert (s.scan, s.ion_mode, s.precursor_mz) == (218, "negative", 343.0672302)
    assert s.retention_time == pytest.approx(349.208)  # PT349.208S
    assert s.spectrum_id == "matchms_testdata.mzXML:scan=218" and s.n_peaks == 50


def test_numpress_arrays_and_profile_spectra() -> None:
    spectra, errors = spectra_and_errors(read_mzml(LOCAL_RAW / "synthetic_profile_numpress.mzML"))
    assert not errors and len(spectra) == 2  # MS1 and MS3 skipped
    centroid, profile = spectra
    assert "centroided" not in centroid.metadata
    assert profile.metadata["centroided"] == "local_maximum"
    # the profile was made of Gaussians around the real (Numpress-encoded) peaks: picking finds them again
    assert profile.n_peaks == centroid.n_peaks
    np.testing.assert_allclose(profile.mz, centroid.mz, atol=2e-3)
    np.testing.assert_allclose(profile.intensity, centroid.intensity, rtol=0.05)


def test_centroid_profile_on_a_known_shape() -> None:
    mz = np.linspace(100.0, 101.0, 1001)
    intensity = (1000 * np.exp(-0.5 * ((mz - 100.3) / 0.01) ** 2)
                 + 500 * np.exp(-0.5 * ((mz - 100.7003) / 0.01) ** 2)).astype(np.float32)
    picked_mz, picked_intensity = centroid_profile(mz, intensity)
    big = picked_intensity > 1
    np.testing.assert_allclose(picked_mz[big], [100.3, 100.7003], atol=5e-4)
    np.testing.assert_allclose(picked_intensity[big], [1000, 500], rtol=0.01)
    empty = centroid_profile(np.zeros(0), np.zeros(0, np.float32))
    assert empty[0].shape == (0,)


def test_truncated_file_keeps_the_scans_before_the_damage() -> None:
    reader = read_mzml(BAD / "truncated.mzML")
    got = []
    with pytest.raises(FileFormatError, match=r"broken XML at line \d+") as info:
        for item in reader:
            got.append(item)
    assert len(got) == 5 and all(isinstance(s, Spectrum) for s in got)
    assert info.value.path == str(BAD / "truncated.mzML") and info.value.reason == "file_error"


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not XML"),
    (b'<?xml version="1.0"?>\n<html><body>hello</body></html>\n', "no <mzML> element"),
])
def test_unreadable_mzml_raises(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.mzML"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message):
        list(read_file(path))


def test_garbage_xml_raises() -> None:
    with pytest.raises(FileFormatError, match=r"garbage\.mzML.*line 3"):
        list(read_file(BAD / "garbage.mzML"))


def _same_spectra(ours: list[object], reference: list[object]) -> None:
    fields = ("spectrum_id", "precursor_mz", "charge", "ion_mode", "native_id", "scan", "ms_level",
              "retention_time", "collision_energy")
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert type(a) is type(b)
        if isinstance(a, Spectrum):
            assert {f: getattr(a, f) for f in fields} == pytest.approx({f: getattr(b, f) for f in fields})
            assert a.metadata == b.metadata  # type: ignore[attr-defined]
            assert a.mz.dtype == b.mz.dtype and a.intensity.dtype == b.intensity.dtype  # type: ignore[attr-defined]
            np.testing.assert_array_equal(a.mz, b.mz)  # type: ignore[attr-defined]
            np.testing.assert_array_equal(a.intensity, b.intensity)  # type: ignore[attr-defined]
        else:
            assert str(a) == str(b)


@pytest.mark.parametrize("path", raw_files() + sorted(LOCAL_RAW.glob("synthetic*")), ids=lambda p: p.name)
def test_every_field_matches_the_pyteomics_reading(path: Path) -> None:
    """The lxml readers give, field by field and peak by peak, what the earlier pyteomics-based readers
    gave (tests/readers/pyteomics_reference.py)."""
    import pyteomics_reference as reference

    if path.suffix == ".mzXML":
        _same_spectra(list(read_mzxml(path)), list(reference.read_mzxml(path)))
    else:
        _same_spectra(list(read_mzml(path)), list(reference.read_mzml(path)))


def _array(values: np.ndarray, params: str, compress: bool) -> str:
    import base64
    import zlib

    raw = values.tobytes()
    text = base64.b64encode(zlib.compress(raw) if compress else raw).decode()
    return f"<binaryDataArray encodedLength=\"{len(text)}\">{params}<binary>{text}</binary></binaryDataArray>"


def test_param_groups_integer_arrays_and_units_read_as_pyteomics_does(tmp_path: Path) -> None:
    """Binary-array and spectrum params given through referenceableParamGroups, 32-bit float m/z,
    64-bit integer intensities, a retention time with only a unit accession, a userParam filter string,
    an MS1 scan and an MS2 without precursor ion (isolation window only)."""
    cv = '<cvParam cvRef="MS" accession="{}" name="{}" value="{}"{}/>'
    mz = np.array([100.5, 200.25, 300.125], dtype="<f4")
    counts = np.array([10, 2000, 30], dtype="<i8")
    groups = (
        "<referenceableParamGroupList count=\"2\">"
        "<referenceableParamGroup id=\"mzArray\">" + cv.format("MS:1000521", "32-bit float", "", "")
        + cv.format("MS:1000574", "zlib compression", "", "") + cv.format("MS:1000514", "m/z array", "", "")
        + "</referenceableParamGroup>"
        "<referenceableParamGroup id=\"ms2\">" + cv.format("MS:1000511", "ms level", "2", "")
        + cv.format("MS:1000129", "negative scan", "", "") + cv.format("MS:1000127", "centroid spectrum", "", "")
        + "</referenceableParamGroup></referenceableParamGroupList>")
    intensity_params = (cv.format("MS:1000522", "64-bit integer", "", "")
                        + cv.format("MS:1000576", "no compression", "", "")
                        + cv.format("MS:1000515", "intensity array", "", ""))

    def spectrum(index: int, level: int, precursor: str) -> str:
        params = ('<referenceableParamGroupRef ref="ms2"/>' if level == 2
                  else cv.format("MS:1000511", "ms level", "1", "") + cv.format("MS:1000130", "positive scan", "", ""))
        return (f'<spectrum index="{index}" id="scan={index + 1}" defaultArrayLength="3">{params}'
                '<userParam name="filter string" type="xsd:string" value="FTMS - c ESI Full ms2 1.0@hcd40"/>'
                '<scanList count="1"><scan>'
                + cv.format("MS:1000016", "scan start time", str(12.5 + index), ' unitAccession="UO:0000010"')
                + f"</scan></scanList>{precursor}"
                '<binaryDataArrayList count="2">'
                + _array(mz, '<referenceableParamGroupRef ref="mzArray"/>', True)
                + _array(counts, intensity_params, False)
                + "</binaryDataArrayList></spectrum>")

    window = ('<precursorList count="1"><precursor><isolationWindow>'
              + cv.format("MS:1000827", "isolation window target m/z", "321.5", "")
              + "</isolationWindow><activation>" + cv.format("MS:1000133", "collision-induced dissociation", "", "")
              + cv.format("MS:1000138", "normalized collision energy", "30", "")
              + "</activation></precursor></precursorList>")
    body = spectrum(0, 1, "") + spectrum(1, 2, window) + spectrum(2, 2, window)
    path = tmp_path / "groups.mzML"
    path.write_text('<?xml version="1.0" encoding="utf-8"?>\n<mzML xmlns="http://psi.hupo.org/ms/mzml" '
                    f'version="1.1.0">{groups}<run id="r"><spectrumList count="3">{body}</spectrumList></run></mzML>')
    import pyteomics_reference as reference

    ours = list(read_mzml(path))
    _same_spectra(ours, list(reference.read_mzml(path)))
    assert len(ours) == 2
    s = ours[0]
    assert isinstance(s, Spectrum) and s.ion_mode == "negative" and s.precursor_mz == 321.5
    assert s.retention_time == 13.5 and s.collision_energy == "30.0 NCE"
    assert s.metadata["filter_string"].startswith("FTMS")
    assert s.metadata["activation"] == "collision-induced dissociation"
    np.testing.assert_allclose(s.mz, mz.astype(np.float64))
    np.testing.assert_array_equal(s.intensity, counts.astype(np.float32))


def test_a_malformed_value_costs_only_its_record(tmp_path: Path) -> None:
    """A non-numeric charge state in one spectrum: that record becomes a parse_error, the others read."""
    text = (LOCAL_RAW / "matchms_testdata.mzML").read_text()
    first = text.index('name="charge state" value="') + len('name="charge state" value="')
    end = text.index('"', first)
    path = tmp_path / "bad_value.mzML"
    path.write_text(text[:first] + "two" + text[end:])
    spectra, errors = spectra_and_errors(read_mzml(path))
    assert len(errors) == 1 and errors[0].reason == "parse_error" and "bad_value.mzML" in str(errors[0])
    assert len(spectra) + len(errors) == len(list(read_mzml(LOCAL_RAW / "matchms_testdata.mzML")))
