"""One settings object per job: every option of ``engine annotate``, ``engine search`` and ``engine rank``.

Each class is a frozen :class:`~engine.core.config.Settings` dataclass whose defaults are the command's
defaults; ``--config job.toml`` reads one (flat TOML, field name = option name with ``_`` for ``-``; an
unknown key is an error naming key and file) and flags given on the command line override it.
:class:`AnnotateSettings` holds what the annotation results depend on (the job fingerprint);
:class:`AnnotateJobSettings` adds where artifacts come from and how the job runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.core.config import DeviceChoice, Settings, setting
from engine.core.records import IonMode
from engine.io.stream import OnInvalid
from engine.jobs.locations import library_path

CandidatesBy = Literal["formula", "mass"]


@dataclass(frozen=True)
class AnnotateSettings(Settings):
    """Knobs the annotation results depend on; all of them are part of the job fingerprint."""

    precursor_tolerance_ppm: float = setting(10.0, gt=0)
    max_mass_difference: float | None = setting(None, gt=0)
    analogue_candidates: int = setting(10, ge=1)
    #: analogue search also searches the library spectra of the other ion mode (identity never does)
    cross_mode: bool = False
    candidates_by: CandidatesBy = "mass"
    candidate_tolerance_ppm: float = setting(10.0, gt=0)
    pubchem: bool = False
    library_evidence: bool = True
    fragment_scoring: bool = True
    #: candidate ranking averages the model's cosine with the bundled ensemble members' (engine rank --ensemble)
    candidate_ensemble: bool = False
    chunk_size: int = setting(4096, ge=1)


@dataclass(frozen=True)
class JobOptions(Settings):
    """How an annotation job reads its inputs."""

    on_invalid: OnInvalid = "skip"
    dataset: str | None = None
    default_ion_mode: IonMode | None = None
    #: the local runner parses the next chunk in a child process while this one is annotated
    read_ahead: bool = True


@dataclass(frozen=True)
class AnnotatorSpec:
    """Where the model, library and candidates come from, and the device (picklable, for Ray workers)."""

    library: str | None = None
    model: str | None = None
    candidates: str | None = None
    settings: AnnotateSettings = field(default_factory=AnnotateSettings)
    device: DeviceChoice = "auto"
    pubchem_cache: str | None = None
    pubchem_timeout: float = 15.0

    def resolved_library(self) -> Path:
        return library_path(self.library)


@dataclass(frozen=True)
class AnnotateJobSettings(AnnotateSettings):
    """Every option of ``engine annotate`` (inputs, ``--out``, ``--config`` and ``--dry-run`` aside)."""

    library: str | None = None
    model: str | None = None
    candidates: str | None = None
    pubchem_cache: str | None = None
    pubchem_timeout: float = setting(15.0, gt=0)
    on_invalid: OnInvalid = "skip"
    dataset: str | None = None
    ion_mode: IonMode | None = None
    workers: int = setting(0, ge=0)
    ray_address: str | None = None
    threads: int = setting(0, ge=0)
    device: DeviceChoice = "auto"
    quiet: bool = False
    repository: str | None = None
    lock_wait: float = setting(0.0, ge=0)
    read_ahead: bool = True
    #: the summary states how many analogue hits reach this reliability and the share of them estimated
    #: below Tanimoto 0.4 (engine.queries.trust); the results do not depend on it
    analogue_min_reliability: float = setting(0.5, ge=0, le=1)

    def results_settings(self) -> AnnotateSettings:
        """The part of these settings the results depend on (the fingerprint's ``settings``)."""
        return AnnotateSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(AnnotateSettings)})

    def spec(self) -> AnnotatorSpec:
        return AnnotatorSpec(library=self.library, model=self.model, candidates=self.candidates,
                             settings=self.results_settings(), device=self.device,
                             pubchem_cache=self.pubchem_cache, pubchem_timeout=self.pubchem_timeout)

    def options(self) -> JobOptions:
        return JobOptions(on_invalid=self.on_invalid, dataset=self.dataset, default_ion_mode=self.ion_mode,
                          read_ahead=self.read_ahead)

    def check(self) -> Iterable[str]:
        if self.pubchem and self.candidates is None:
            yield "pubchem needs candidates (the local table used when PubChem cannot be reached)"
        if self.repository is not None and self.dataset is None:
            yield "repository needs dataset (its spectra are stored by USI)"
        if self.repository is not None and (self.workers or self.ray_address):
            yield "repository runs in this process (no workers or ray_address)"


@dataclass(frozen=True)
class SearchSettings(Settings):
    """Every option of ``engine search`` (QUERIES and ``--config`` aside)."""

    library: str | None = None
    mode: Literal["identity", "analogue"] = "identity"
    smiles: tuple[str, ...] = ()
    top_k: int = setting(10, ge=1)
    precursor_tolerance_ppm: float = setting(10.0, gt=0)
    max_mass_difference: float | None = setting(None, gt=0)
    analogue_candidates: int = setting(2000, ge=1)
    fdr: float | None = setting(None, gt=0, le=1)
    cross_mode: bool = False
    min_library_quality: float | None = setting(None, ge=0, le=1)
    adducts: tuple[str, ...] = ()
    out: str | None = None
    model: str | None = None
    fixed_embedder: bool = False
    on_invalid: OnInvalid = "error"
    ion_mode: IonMode | None = None
    batch_size: int = setting(2048, ge=1)
    quiet: bool = False
    report: str | None = None
    device: DeviceChoice = "auto"

    def check(self) -> Iterable[str]:
        if self.library is None:
            yield "library is required (--library LIBRARY, or library = ... in the config file)"
        if self.fdr is not None and self.mode != "identity":
            yield "fdr applies to identity search (q-values come from identity matches)"
        if self.cross_mode and self.mode != "analogue":
            yield "cross_mode applies to analogue search; identity stays within one ion mode"


@dataclass(frozen=True)
class RankSettings(Settings):
    """Every option of ``engine rank`` (QUERIES and ``--config`` aside)."""

    candidates: str | None = None
    by: CandidatesBy = "formula"
    tolerance_ppm: float = setting(10.0, gt=0)
    candidate_lists: str | None = None
    pubchem: bool = False
    pubchem_cache: str | None = None
    pubchem_timeout: float = setting(15.0, ge=0.1)
    library: str | None = None
    fragment_scoring: bool = True
    processes: int = setting(1, ge=1)
    top_k: int = setting(20, ge=1)
    out: str | None = None
    model: str | None = None
    #: average the model's spectrum-molecule cosine with the bundled ensemble members' (engine/data/model/members)
    ensemble: bool = False
    #: further ensemble members (checkpoints)
    ensemble_members: tuple[str, ...] = ()
    on_invalid: OnInvalid = "error"
    ion_mode: IonMode | None = None
    batch_size: int = setting(1024, ge=1)
    quiet: bool = False
    report: str | None = None
    device: DeviceChoice = "auto"

    def check(self) -> Iterable[str]:
        if self.out is None:
            yield "out is required (--out FILE, or out = ... in the config file)"
        if self.candidate_lists is not None and (self.candidates is not None or self.pubchem):
            yield "candidate_lists excludes candidates and pubchem"


def settings_dict(settings: Any) -> dict[str, Any]:
    """JSON-ready dict of a settings object (tuples as lists)."""
    return json_ready(dataclasses.asdict(settings))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
