"""Build tests/data/model fixtures from redistributable MassBank records (CC0 / CC BY). Run from the repo root."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rdkit import Chem
from rdkit.Chem.Descriptors import ExactMolWt
from rdkit.Chem.rdMolDescriptors import CalcMolFormula

rng = np.random.default_rng(3)
t = pq.read_table('/work/shared/data/massbank/spectra.parquet')
t = t.filter(pc.is_in(t['license'], pa.array(['CC0', 'CC BY'])))
t = t.filter(pc.match_substring_regex(t['instrument_type'], 'TOF|FT'))
t = t.filter(pc.greater_equal(pc.list_value_length(t['mz']), 6))
t = t.filter(pc.less_equal(pc.list_value_length(t['mz']), 60))
t = t.filter(pc.less(pc.abs(t['precursor_ppm_error']), 10))
df = t.select(['inchikey14', 'split', 'ion_mode']).to_pandas()
g = df.groupby(['split', 'inchikey14']).ion_mode.agg(['nunique', 'count']).reset_index()
picked = []
for split, n in (('train', 12), ('val', 4)):
    cand = g[(g.split == split) & (g['count'] >= 4)]
    both = cand[cand['nunique'] == 2]
    pool = list(both.inchikey14)[:200]
    chosen = rng.choice(pool, size=min(n, len(pool)), replace=False).tolist()
    picked += chosen
rows = []
for ik in picked:
    idx = np.flatnonzero(np.asarray(t['inchikey14'].to_pylist()) == ik)
    modes = np.asarray(t['ion_mode'].to_pylist())[idx]
    sel = list(idx[modes == 'positive'][:3]) + list(idx[modes == 'negative'][:2])
    rows += sel
small = t.take(pa.array(sorted(rows)))
pq.write_table(small, 'tests/data/model/massbank_tiny.parquet', compression='zstd')
print(small.num_rows, 'spectra', len(set(small['inchikey14'].to_pylist())), 'structures')
print(pc.value_counts(small['split']), pc.value_counts(small['license']))
# candidates: other redistributable MassBank structures
others = t.filter(pc.invert(pc.is_in(t['inchikey14'], pa.array(picked))))
smi = list(dict.fromkeys(others['smiles'].to_pylist()))[:300]
recs = []
for s in small['smiles'].to_pylist() + smi:
    m = Chem.MolFromSmiles(s)
    recs.append({'smiles': s, 'inchikey': Chem.MolToInchiKey(m), 'inchikey14': Chem.MolToInchiKey(m)[:14],
                 'formula': CalcMolFormula(m), 'monoisotopic_mass': ExactMolWt(m),
                 'formal_charge': Chem.GetFormalCharge(m)})
cands = pa.Table.from_pylist(recs)
pq.write_table(cands, 'tests/data/model/candidates_tiny.parquet', compression='zstd')
print(cands.num_rows, 'candidates')
lines = ["# Model test fixtures", "",
         "`massbank_tiny.parquet`: MassBank records (release 2025.05.1, MassBank/MassBank-data) licensed CC0 or CC BY,",
         "columns as in `../shared/data/massbank/spectra.parquet`. `candidates_tiny.parquet`: the structures of",
         "these and of other CC0 / CC BY MassBank records, with formula and monoisotopic mass from RDKit.",
         "Built by `build.py` in this folder (reads `../shared/data`; run from the repository root).", "",
         "| accession | licence | copyright | contributor |", "|---|---|---|---|"]
for r in small.select(['spectrum_id', 'license', 'copyright', 'contributor']).to_pylist():
    lines.append(f"| {r['spectrum_id']} | {r['license']} | {r['copyright']} | {r['contributor']} |")
lines += ["", "Candidate structures come from these MassBank accessions (first record per structure):", ""]
first = {}
for r in others.select(['smiles', 'spectrum_id', 'license', 'contributor']).to_pylist():
    first.setdefault(r['smiles'], r)
lines += [", ".join(f"{first[s]['spectrum_id']} ({first[s]['license']}, {first[s]['contributor']})" for s in smi)]
with open('tests/data/model/README.md', 'w') as fh:
    fh.write("\n".join(lines) + "\n")
