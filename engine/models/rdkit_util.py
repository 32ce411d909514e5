"""RDKit, quietly: the engine reports an unparsable structure as its own error naming the record, so RDKit's
own log lines (printed to stderr for every bad SMILES) are turned off. RDKit is imported on first use."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def silence_rdkit() -> None:
    """Turn RDKit's log off (idempotent)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]


def parse_smiles(smiles: object, *, max_length: int | None = None) -> Any | None:
    """The RDKit molecule of ``smiles``; None for a non-string, an empty or (beyond ``max_length``) too long
    string, one RDKit cannot parse, or one without atoms."""
    from rdkit import Chem

    silence_rdkit()
    if not isinstance(smiles, str) or not smiles.strip() or (max_length is not None and len(smiles) > max_length):
        return None
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None or mol.GetNumAtoms() == 0 else mol


def packed_fingerprint(smiles: object, n_bits: int = 2048) -> npt.NDArray[np.uint8]:
    """RDKit's topological fingerprint (``RDKFingerprint``, ``n_bits`` bits) of ``smiles``, packed into
    ``n_bits // 8`` bytes; zeros when it does not parse."""
    from rdkit import Chem, DataStructs

    bits = np.zeros(n_bits, dtype=np.uint8)
    mol = parse_smiles(smiles)
    if mol is not None:
        DataStructs.ConvertToNumpyArray(Chem.RDKFingerprint(mol, fpSize=n_bits), bits)
    return np.packbits(bits)
