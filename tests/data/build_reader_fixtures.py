"""Build the reader fixtures of tests/data (massbank/, dialects/, raw/, bad/) from ../shared/data.

Development tool, not part of the product; run from the repository root:
``.venv/bin/python tests/data/build_reader_fixtures.py``. Only MassBank records licensed CC0 or
CC BY are used, and their accession, licence, copyright and contributor are written next to them
(and listed in tests/data/README.md). Output is deterministic.
"""

from __future__ import annotations

import base64
import gzip
import shutil
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "tests" / "data"
N_PER_MODE = 20
RAW_COPIES = ("matchms_testdata.mzML", "matchms_testdata.mzXML", "SiriusAdapter_4_input.mzML",
              "AssayGeneratorMetabo_input.mzML")


def select_records() -> pa.Table:
    """20 positive and 20 negative CC0 / CC BY records, one per contributor where possible."""
    t = pq.read_table(SHARED / "massbank" / "spectra.parquet")
    t = t.filter(pc.is_in(t["license"], pa.array(["CC0", "CC BY"])))
    t = t.filter(pc.match_substring_regex(t["instrument_type"], "TOF|FT"))
    n_peaks = pc.list_value_length(t["mz"])
    t = t.filter(pc.and_(pc.greater_equal(n_peaks, 5), pc.less_equal(n_peaks, 40)))
    t = t.filter(pc.less(pc.abs(t["precursor_ppm_error"]), 10))
    t = t.sort_by("spectrum_id")
    rng = np.random.default_rng(7)
    rows: list[int] = []
    for mode in ("positive", "negative"):
        idx = np.flatnonzero(np.asarray(t["ion_mode"].to_pylist()) == mode)
        contributors = np.asarray(t["contributor"].to_pylist())[idx]
        adducts = np.asarray([a or "" for a in t["adduct"].to_pylist()])[idx]
        picked: list[int] = []
        # one record per contributor first, rarer adducts preferred, then fill up at random
        for contributor in sorted(set(contributors)):
            pool = idx[contributors == contributor]
            rare = pool[~np.isin(adducts[contributors == contributor], ["[M+H]+", "[M-H]-"])]
            picked.append(int(rng.choice(rare if len(rare) else pool)))
        rest = np.setdiff1d(idx, picked)
        picked += [int(i) for i in rng.choice(rest, size=max(0, N_PER_MODE - len(picked)), replace=False)]
        rows += sorted(picked[:N_PER_MODE])
    return t.take(pa.array(rows))


def peaks(rec: dict, sep: str = " ") -> list[str]:
    return [f"{m!r}{sep}{float(np.float32(i))!r}" for m, i in zip(rec["mz"], rec["intensity"], strict=True)]


def charge_text(rec: dict) -> str:
    charge = rec["charge"] or (1 if rec["ion_mode"] == "positive" else -1)
    return f"{abs(charge)}{'+' if charge > 0 else '-'}"


def rt_minutes(rec: dict) -> float | None:
    try:
        return float(rec["retention_time"])
    except (TypeError, ValueError):
        return None


def massbank_mgf(rec: dict) -> str:
    lines = ["BEGIN IONS", f"TITLE={rec['spectrum_id']}", f"PEPMASS={rec['precursor_mz']!r}",
             f"CHARGE={charge_text(rec)}", f"IONMODE={rec['ion_mode'].capitalize()}"]
    if rec["adduct"]:
        lines.append(f"ADDUCT={rec['adduct']}")
    for key, col in (("NAME", "name"), ("SMILES", "smiles"), ("INCHIKEY", "inchikey"), ("FORMULA", "formula"),
                     ("INSTRUMENT_TYPE", "instrument_type"), ("INSTRUMENT", "instrument"),
                     ("COLLISION_ENERGY", "collision_energy"), ("FRAGMENTATION_MODE", "fragmentation_mode"),
                     ("SPLASH", "splash"), ("LICENSE", "license"), ("COPYRIGHT", "copyright"),
                     ("CONTRIBUTOR", "contributor")):
        if rec[col]:
            lines.append(f"{key}={rec[col]}")
    rt = rt_minutes(rec)
    if rt is not None:
        lines.append(f"RTINMINUTES={rt!r}")
    lines += peaks(rec)
    lines.append("END IONS")
    return "\n".join(lines) + "\n\n"


def massbank_msp(rec: dict) -> str:
    comments = " ".join(f'"{k}={rec[k]}"' for k in ("smiles", "license", "copyright", "contributor", "splash")
                        if rec[k])
    lines = [f"Name: {rec['name']}", f"DB#: {rec['spectrum_id']}", f"InChIKey: {rec['inchikey']}",
             f"Formula: {rec['formula']}", f"PrecursorMZ: {rec['precursor_mz']!r}"]
    if rec["adduct"]:
        lines.append(f"Precursor_type: {rec['adduct']}")
    lines += ["Spectrum_type: MS2", f"Instrument_type: {rec['instrument_type']}",
              f"Ion_mode: {'P' if rec['ion_mode'] == 'positive' else 'N'}"]
    if rec["collision_energy"]:
        lines.append(f"Collision_energy: {rec['collision_energy']}")
    lines += [f"Comments: {comments}", f"Num Peaks: {len(rec['mz'])}"]
    lines += peaks(rec)
    return "\n".join(lines) + "\n\n"


def dialects(recs: list[dict]) -> dict[str, str]:
    """The same real records written in the key styles of GNPS, matchms, MassSpecGym, MZmine, SIRIUS, NIST
    and MS-DIAL."""
    pos = [r for r in recs if r["ion_mode"] == "positive"][:2]
    neg = [r for r in recs if r["ion_mode"] == "negative"][:1]
    three = pos + neg
    out: dict[str, str] = {}
    gnps = []
    for scan, r in enumerate(three, start=1):
        gnps.append("\n".join([
            "BEGIN IONS", f"PEPMASS={r['precursor_mz']!r}", "CHARGE=1" if r["ion_mode"] == "positive" else "CHARGE=-1",
            "MSLEVEL=2", f"SOURCE_INSTRUMENT= {r['instrument_type']}", "FILENAME=massbank.mzML", "SEQ=*..*",
            f"IONMODE={r['ion_mode'].capitalize()}", "ORGANISM=MASSBANK", f"NAME={r['name']} {r['adduct']}",
            f"PI={r['contributor']}", f"DATACOLLECTOR={r['contributor']}", f"SMILES={r['smiles']}",
            "INCHI=N/A", "INCHIAUX=N/A", "PUBMED=N/A", "SUBMITUSER=massbank", "TAGS=", "LIBRARYQUALITY=1",
            f"SPECTRUMID={r['spectrum_id']}", f"SCANS={scan}", *peaks(r, "\t"), "END IONS"]) + "\n")
    out["gnps.mgf"] = "\n".join(gnps)
    matchms = []
    for r in three:
        matchms.append("\n".join([
            "BEGIN IONS", f"title={r['spectrum_id']}", f"pepmass={r['precursor_mz']!r} 10000.0",
            f"charge={charge_text(r)}", f"ionmode={r['ion_mode']}", f"compound_name={r['name']}",
            f"precursor_mz={r['precursor_mz']!r}", f"adduct={r['adduct']}", f"smiles={r['smiles']}",
            f"inchikey={r['inchikey']}", f"spectrum_id={r['spectrum_id']}", *peaks(r), "END IONS"]) + "\n")
    out["matchms.mgf"] = "\n".join(matchms)
    msg = []
    for r in three:
        top = max(r["intensity"])
        rel = [f"{m!r} {i / top:.4f}" for m, i in zip(r["mz"], r["intensity"], strict=True)]
        msg.append("\n".join([
            "BEGIN IONS", f"IDENTIFIER={r['spectrum_id']}", f"SMILES={r['smiles']}", f"INCHIKEY={r['inchikey'][:14]}",
            f"FORMULA={r['formula']}", f"PRECURSOR_FORMULA={r['formula']}", f"PARENT_MASS={r['exact_mass']!r}",
            f"PRECURSOR_MZ={r['precursor_mz']!r}", f"ADDUCT={r['adduct']}", f"INSTRUMENT_TYPE={r['instrument_type']}",
            f"COLLISION_ENERGY={r['collision_energy']}", "FOLD=train", "SIMULATION_CHALLENGE=False", *rel,
            "END IONS"]) + "\n")
    out["massspecgym.mgf"] = "\n".join(msg)
    mzmine = []
    for fid, r in enumerate(three, start=1):
        rt = (rt_minutes(r) or 1.0) * 60
        mzmine.append("\n".join([
            "BEGIN IONS", f"FEATURE_ID={fid}", f"PEPMASS={r['precursor_mz']!r}", f"SCANS={fid}",
            f"RTINSECONDS={rt!r}", f"CHARGE={charge_text(r)}", "MSLEVEL=2", *peaks(r), "END IONS"]) + "\n")
    out["mzmine.mgf"] = "\n".join(mzmine)
    sirius = []
    for fid, r in enumerate(three, start=1):
        rt = (rt_minutes(r) or 1.0) * 60
        head = [f"FEATURE_ID={fid}", f"PEPMASS={r['precursor_mz']!r}", f"CHARGE={charge_text(r)}",
                f"RTINSECONDS={rt!r}"]
        ms1 = [f"{r['precursor_mz']!r} 100.0", f"{r['precursor_mz'] + 1.003355!r} 11.0"]  # synthetic isotope pattern
        sirius.append("\n".join(["BEGIN IONS", *head, "SPECTYPE=CORRELATED MS", "MSLEVEL=1", "FILENAME=run.mzML",
                                 *ms1, "END IONS"]) + "\n")
        sirius.append("\n".join(["BEGIN IONS", *head, "MSLEVEL=2", "FILENAME=run.mzML", f"SCANS={100 + fid}",
                                 *peaks(r), "END IONS"]) + "\n")
    out["sirius.mgf"] = "\n".join(sirius)
    nist = []
    for n, r in enumerate(three):
        pairs = [f"{m!r} {float(np.float32(i))!r}" for m, i in zip(r["mz"], r["intensity"], strict=True)]
        if n == 0:  # one peak a line with a quoted annotation
            body = [f'{pair} "peak {k}"' for k, pair in enumerate(pairs)]
        else:  # NIST style: several "mz intensity;" pairs a line
            body = ["; ".join(pairs[k:k + 3]) + ";" for k in range(0, len(pairs), 3)]
        nist.append("\n".join([
            f"Name: {r['name']}", f"Synon: {r['spectrum_id']}", "Synon: $:00in-source",
            f"Precursor_type: {r['adduct']}", "Spectrum_type: MS2", f"PrecursorMZ: {r['precursor_mz']!r}",
            f"Instrument_type: {r['instrument_type']}", f"Ion_mode: {'P' if r['ion_mode'] == 'positive' else 'N'}",
            f"Formula: {r['formula']}", f"ID: {r['spectrum_id']}", f"Comments: \"license={r['license']}\"",
            f"Num peaks: {len(r['mz'])}", *body]) + "\n")
    out["nist.msp"] = "\n".join(nist)
    msdial = []
    for r in three:
        msdial.append("\n".join([
            f"NAME: {r['name']}", f"PRECURSORMZ: {r['precursor_mz']!r}", f"PRECURSORTYPE: {r['adduct']}",
            f"FORMULA: {r['formula']}", "Ontology: ", f"INCHIKEY: {r['inchikey']}", f"SMILES: {r['smiles']}",
            f"RETENTIONTIME: {rt_minutes(r) or 1.0!r}", f"IONMODE: {r['ion_mode'].capitalize()}",
            f"INSTRUMENTTYPE: {r['instrument_type']}", f"COLLISIONENERGY: {r['collision_energy']}",
            f"Comment: {r['spectrum_id']}", f"Num Peaks: {len(r['mz'])}", *peaks(r, "\t")]) + "\n")
    out["msdial.msp"] = "\n".join(msdial)
    return out


def b64(values: np.ndarray, *, compress: bool) -> str:
    raw = values.tobytes()
    return base64.b64encode(zlib.compress(raw) if compress else raw).decode()


_ARRAY = """          <binaryDataArray encodedLength="{length}">
            {dtype}
            {compression}
            <cvParam cvRef="MS" accession="{acc}" name="{name}" value=""{unit}/>
            <binary>{data}</binary>
          </binaryDataArray>"""
_F64 = '<cvParam cvRef="MS" accession="MS:1000523" name="64-bit float" value=""/>'
_ZLIB = '<cvParam cvRef="MS" accession="MS:1000574" name="zlib compression" value=""/>'
_NONE = '<cvParam cvRef="MS" accession="MS:1000576" name="no compression" value=""/>'
_LINEAR = '<cvParam cvRef="MS" accession="MS:1002312" name="MS-Numpress linear prediction compression" value=""/>'
_SLOF = '<cvParam cvRef="MS" accession="MS:1002314" name="MS-Numpress short logged float compression" value=""/>'
_MZ = ("MS:1000514", "m/z array", ' unitCvRef="MS" unitAccession="MS:1000040" unitName="m/z"')
_INT = ("MS:1000515", "intensity array", ' unitCvRef="MS" unitAccession="MS:1000131" unitName="number of detector counts"')


def _arrays(mz: np.ndarray, intensity: np.ndarray, encoding: str) -> str:
    import pynumpress

    parts = []
    for values, (acc, name, unit) in ((mz, _MZ), (intensity, _INT)):
        if encoding == "numpress":
            if acc == _MZ[0]:
                data = base64.b64encode(bytes(pynumpress.encode_linear(
                    values, pynumpress.optimal_linear_fixed_point(values)))).decode()
                comp = _LINEAR
            else:
                data = base64.b64encode(bytes(pynumpress.encode_slof(
                    values, pynumpress.optimal_slof_fixed_point(values)))).decode()
                comp = _SLOF
            dtype = _F64
        else:
            data = b64(values.astype(np.float64), compress=encoding == "zlib")
            comp = _ZLIB if encoding == "zlib" else _NONE
            dtype = _F64
        parts.append(_ARRAY.format(length=len(data), dtype=dtype, compression=comp, acc=acc, name=name, unit=unit,
                                   data=data))
    return "\n".join(parts)


def _spectrum(index: int, scan: int, ms_level: int, rt_min: float, mz: np.ndarray, intensity: np.ndarray,
              encoding: str, *, profile: bool = False, precursor: float | None = None, charge: int | None = None,
              polarity: str = "positive") -> str:
    kind = "profile spectrum" if profile else "centroid spectrum"
    kind_acc = "MS:1000128" if profile else "MS:1000127"
    pol_acc = "MS:1000130" if polarity == "positive" else "MS:1000129"
    prec = ""
    if precursor is not None:
        charge_param = (f'\n                <cvParam cvRef="MS" accession="MS:1000041" name="charge state" '
                        f'value="{charge}"/>') if charge else ""
        prec = f"""
        <precursorList count="1">
          <precursor spectrumRef="controllerType=0 controllerNumber=1 scan={scan - 1}">
            <selectedIonList count="1">
              <selectedIon>
                <cvParam cvRef="MS" accession="MS:1000744" name="selected ion m/z" value="{precursor!r}" unitCvRef="MS" unitAccession="MS:1000040" unitName="m/z"/>{charge_param}
              </selectedIon>
            </selectedIonList>
            <activation>
              <cvParam cvRef="MS" accession="MS:1000422" name="beam-type collision-induced dissociation" value=""/>
              <cvParam cvRef="MS" accession="MS:1000045" name="collision energy" value="35.0" unitCvRef="UO" unitAccession="UO:0000266" unitName="electronvolt"/>
            </activation>
          </precursor>
        </precursorList>"""
    return f"""      <spectrum index="{index}" id="controllerType=0 controllerNumber=1 scan={scan}" defaultArrayLength="{len(mz)}">
        <cvParam cvRef="MS" accession="MS:1000511" name="ms level" value="{ms_level}"/>
        <cvParam cvRef="MS" accession="{pol_acc}" name="{polarity} scan" value=""/>
        <cvParam cvRef="MS" accession="{kind_acc}" name="{kind}" value=""/>
        <scanList count="1">
          <cvParam cvRef="MS" accession="MS:1000795" name="no combination" value=""/>
          <scan>
            <cvParam cvRef="MS" accession="MS:1000016" name="scan start time" value="{rt_min!r}" unitCvRef="UO" unitAccession="UO:0000031" unitName="minute"/>
          </scan>
        </scanList>{prec}
        <binaryDataArrayList count="2">
{_arrays(mz, intensity, encoding)}
        </binaryDataArrayList>
      </spectrum>"""


def synthetic_mzml(rec: dict) -> str:
    """A small mzML built around one real MassBank spectrum: MS1 (Numpress), the MS2 centroid (Numpress),
    the same MS2 as a synthetic Gaussian profile (zlib), and an MS3 scan that readers must skip."""
    mz = np.asarray(rec["mz"], dtype=np.float64)
    intensity = np.asarray(rec["intensity"], dtype=np.float64)
    ms1_mz = np.array([rec["precursor_mz"], rec["precursor_mz"] + 1.003355])
    ms1_int = np.array([1.0e6, 1.1e5])
    grid = np.arange(mz.min() - 0.05, mz.max() + 0.05, 0.002)
    profile = np.zeros_like(grid)
    for m, i in zip(mz, intensity, strict=True):
        profile += i * np.exp(-0.5 * ((grid - m) / 0.004) ** 2)
    keep = profile > intensity.max() * 1e-4
    spectra = [
        _spectrum(0, 1, 1, 1.5, ms1_mz, ms1_int, "numpress"),
        _spectrum(1, 2, 2, 1.51, mz, intensity, "numpress", precursor=rec["precursor_mz"], charge=1),
        _spectrum(2, 3, 2, 1.52, grid[keep], profile[keep], "zlib", profile=True, precursor=rec["precursor_mz"],
                  charge=1),
        _spectrum(3, 4, 3, 1.53, mz[:3], intensity[:3], "none", precursor=float(mz[-1])),
    ]
    body = "\n".join(spectra)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<mzML xmlns="http://psi.hupo.org/ms/mzml" version="1.1.0" id="synthetic">
  <cvList count="2">
    <cv id="MS" fullName="Proteomics Standards Initiative Mass Spectrometry Ontology" version="4.1.0" URI="https://raw.githubusercontent.com/HUPO-PSI/psi-ms-CV/master/psi-ms.obo"/>
    <cv id="UO" fullName="Unit Ontology" version="09:04:2014" URI="https://raw.githubusercontent.com/bio-ontology-research-group/unit-ontology/master/unit.obo"/>
  </cvList>
  <fileDescription>
    <fileContent>
      <cvParam cvRef="MS" accession="MS:1000580" name="MSn spectrum" value=""/>
    </fileContent>
  </fileDescription>
  <softwareList count="1">
    <software id="build_reader_fixtures" version="1"/>
  </softwareList>
  <instrumentConfigurationList count="1">
    <instrumentConfiguration id="IC1"/>
  </instrumentConfigurationList>
  <dataProcessingList count="1">
    <dataProcessing id="dp"/>
  </dataProcessingList>
  <run id="synthetic" defaultInstrumentConfigurationRef="IC1">
    <spectrumList count="{len(spectra)}" defaultDataProcessingRef="dp">
{body}
    </spectrumList>
  </run>
</mzML>
"""


def bad_files(recs: list[dict]) -> dict[str, bytes]:
    """The bad-input corpus: every bad MGF holds good records around the bad one."""
    good = [massbank_mgf(r) for r in recs[:2]]
    base = recs[2]

    def record(title: str, header: list[str] | None = None, body: list[str] | None = None,
               end: bool = True) -> str:
        head = header if header is not None else [f"PEPMASS={base['precursor_mz']!r}", "CHARGE=1+",
                                                   "IONMODE=positive"]
        lines = ["BEGIN IONS", f"TITLE={title}", *head, *(body if body is not None else peaks(base))]
        if end:
            lines.append("END IONS")
        return "\n".join(lines) + "\n\n"

    def wrap(*bad: str) -> bytes:
        return (good[0] + "".join(bad) + good[1]).encode()

    p = peaks(base)
    files: dict[str, bytes] = {
        "no_end_ions.mgf": (good[0] + record("missing_end_ions", end=False) + good[1]
                            + record("missing_end_ions_at_eof", end=False)).encode(),
        "non_numeric_peaks.mgf": wrap(record("non_numeric_peak", body=[p[0], "123.4567 abc", *p[1:]])),
        "nan_inf_negative.mgf": wrap(record("nan_intensity", body=[p[0], "150.1 nan", *p[1:]]),
                                     record("inf_mz", body=[p[0], "inf 10.0", *p[1:]]),
                                     record("negative_intensity", body=[p[0], "150.1 -5.0", *p[1:]])),
        "unsorted_duplicate.mgf": wrap(record("unsorted_peaks", body=list(reversed(p))),
                                       record("duplicate_mz", body=[p[0], p[0], *p[1:]])),
        "empty_spectrum.mgf": wrap(record("no_peaks", body=[])),
        "missing_precursor.mgf": wrap(record("no_pepmass", header=["CHARGE=1+", "IONMODE=positive"])),
        "charge_zero.mgf": wrap(record("charge_zero", header=[f"PEPMASS={base['precursor_mz']!r}", "CHARGE=0",
                                                              "IONMODE=positive"])),
        "unknown_ion_mode.mgf": wrap(record("sideways_ion_mode", header=[f"PEPMASS={base['precursor_mz']!r}",
                                                                         "IONMODE=sideways"])),
        "empty.mgf": b"",
    }
    files["non_utf8.mgf"] = (good[0] + "BEGIN IONS\nTITLE=latin1_name\n").encode() + \
        "NAME=Caf\xe9ine\n".encode("latin-1") + \
        (f"PEPMASS={base['precursor_mz']!r}\nCHARGE=1+\n" + "\n".join(p) + "\nEND IONS\n\n" + good[1]).encode()
    files["compressed.mgf"] = gzip.compress((good[0] + good[1]).encode(), mtime=0)
    return files


def main() -> None:
    table = select_records()
    recs = table.to_pylist()
    (OUT / "massbank").mkdir(parents=True, exist_ok=True)
    (OUT / "massbank" / "massbank.mgf").write_text("".join(massbank_mgf(r) for r in recs))
    (OUT / "massbank" / "massbank.msp").write_text("".join(massbank_msp(r) for r in recs))
    pq.write_table(table, OUT / "massbank" / "massbank.parquet", compression="zstd")
    (OUT / "dialects").mkdir(exist_ok=True)
    for name, text in dialects(recs).items():
        (OUT / "dialects" / name).write_text(text)
    raw = OUT / "raw"
    raw.mkdir(exist_ok=True)
    for name in RAW_COPIES:
        shutil.copyfile(SHARED / "raw" / name, raw / name)
    synthetic = next(r for r in recs if r["ion_mode"] == "positive" and len(r["mz"]) >= 8)
    (raw / "synthetic_profile_numpress.mzML").write_text(synthetic_mzml(synthetic))
    bad = OUT / "bad"
    bad.mkdir(exist_ok=True)
    for name, data in bad_files(recs).items():
        (bad / name).write_bytes(data)
    source = (SHARED / "raw" / "matchms_testdata.mzML").read_bytes()
    cut = source.find(b"</spectrum>", source.find(b'index="5"')) + len(b"</spectrum>") + 40
    (bad / "truncated.mzML").write_bytes(source[:cut])
    (bad / "garbage.mzML").write_bytes(b'<?xml version="1.0"?>\n<mzML xmlns="http://psi.hupo.org/ms/mzml">\n'
                                       b"<run><spectrumList count=\"1\"><spectrum index=0 id=>\n"
                                       b"this is <not> well-formed & never closed\n")
    mixed = bad / "mixed"
    mixed.mkdir(exist_ok=True)
    (mixed / "good.mgf").write_text("".join(massbank_mgf(r) for r in recs[3:6]))
    (mixed / "good.msp").write_text("".join(massbank_msp(r) for r in recs[20:23]))
    shutil.copyfile(bad / "non_numeric_peaks.mgf", mixed / "non_numeric_peaks.mgf")
    shutil.copyfile(bad / "truncated.mzML", mixed / "truncated.mzML")
    (mixed / "empty.mgf").write_bytes(b"")
    (mixed / "notes.txt").write_text("not a spectrum file\n")
    rows = [(r["spectrum_id"], r["license"], r["copyright"], r["contributor"]) for r in recs]
    (OUT / "massbank" / "ATTRIBUTION.md").write_text(
        "| accession | licence | copyright | contributor |\n|---|---|---|---|\n"
        + "".join(f"| {a} | {lic} | {c or '(none given)'} | {who} |\n" for a, lic, c, who in rows))
    print(f"{len(recs)} records; done")


if __name__ == "__main__":
    main()
