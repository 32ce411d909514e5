"""RDKit, quietly: the engine reports an unparsable structure as its own error naming the record, so RDKit's
own log lines (printed to stderr for every bad SMILES) are turned off. RDKit is imported on first use."""

from __future__ import annotations

from typing import Any


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
