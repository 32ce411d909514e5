"""RDKit featurisation: a known molecule's atoms, bonds and feature columns; invalid SMILES."""

from __future__ import annotations

import numpy as np
import pytest

from engine.core.errors import InvalidMoleculeError
from engine.models.encoders.featurize import (
    ATOM_FEATURE_SIZES,
    ATOM_FEATURES,
    BOND_FEATURE_SIZES,
    ELEMENTS,
    GraphStore,
    concat_ranges,
    featurize,
)

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_aspirin_graph() -> None:
    g = featurize(ASPIRIN)
    assert g.x.shape == (13, len(ATOM_FEATURES))          # 9 C + 4 O heavy atoms
    assert g.n_bonds == 13 and g.edge_index.shape == (2, 26) and g.edge_attr.shape == (26, 4)
    elements = [ELEMENTS[i] for i in g.x[:, 0]]
    assert elements.count("C") == 9 and elements.count("O") == 4
    assert g.x[:, 4].sum() == 6 and g.x[:, 5].sum() == 6   # six aromatic ring atoms
    assert g.x[:, 3].sum() == 8                            # C9H8O4: hydrogens stay implicit
    assert (g.x < np.array(ATOM_FEATURE_SIZES)).all() and (g.edge_attr < np.array(BOND_FEATURE_SIZES)).all()
    # every bond appears in both directions with the same features
    assert (g.edge_index[:, 0::2] == g.edge_index[::-1, 1::2]).all()
    assert (g.edge_attr[0::2] == g.edge_attr[1::2]).all()
    assert (g.edge_attr[:, 0] == 3).sum() == 12            # 6 aromatic bonds x 2 directions


def test_charge_and_chirality_columns() -> None:
    g = featurize("C[C@H](N)C(=O)[O-]")
    assert set(g.x[:, 7].tolist()) >= {0, 1} or set(g.x[:, 7].tolist()) >= {0, 2}
    assert (g.x[:, 2] == 1).sum() == 1                     # one atom with charge -1


@pytest.mark.parametrize("bad", ["C1CC", "not a smiles", "", "C(C)(C)(C)(C)C"])
def test_invalid_smiles_names_the_molecule(bad: str) -> None:
    with pytest.raises(InvalidMoleculeError, match="invalid SMILES") as info:
        featurize(bad)
    assert repr(bad) in str(info.value)
    assert info.value.reason == "invalid_smiles"


def test_batch_is_disjoint_union() -> None:
    graphs = [featurize(s) for s in ("CCO", ASPIRIN, "c1ccncc1")]
    store = GraphStore.from_graphs(graphs)
    batch = store.batch(np.array([2, 0, 2]))
    assert batch.n_graphs == 3
    assert batch.x.shape[0] == 6 + 3 + 6
    assert batch.batch.tolist() == [0] * 6 + [1] * 3 + [2] * 6
    # edges of the third graph point at atoms 9..14
    n_first = graphs[2].edge_attr.shape[0] + graphs[0].edge_attr.shape[0]
    assert batch.edge_index[:, n_first:].min() == 9 and batch.edge_index[:, n_first:].max() == 14
    assert (batch.x[9:] == graphs[2].x).all()


def test_concat_ranges() -> None:
    out = concat_ranges(np.array([5, 0, 10, 3]), np.array([2, 0, 3, 1]))
    assert out.tolist() == [5, 6, 10, 11, 12, 3]
