"""The reader process gives exactly what reading in process gives: chunks, reports, skips and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.errors import InvalidInputError
from engine.io.stream import ReadReport
from engine.jobs.chunks import Chunk, InputFile
from engine.jobs.prefetch import ChunkReader, ReadRequest

DATA = Path(__file__).resolve().parents[1] / "data"
MASSBANK = DATA / "massbank" / "massbank.mgf"


def request(path: Path, *, on_invalid: str = "skip", skip: object = None, chunk_size: int = 7) -> ReadRequest:
    return ReadRequest(InputFile(path, "0" * 64), chunk_size=chunk_size, on_invalid=on_invalid,  # type: ignore[arg-type]
                       dataset=None, default_ion_mode=None, skip=skip)  # type: ignore[arg-type]


def summary(chunks: list[Chunk]) -> list[tuple[int, bool, list[object]]]:
    return [(c.index, c.last, c.batch.to_pylist()) for c in chunks]


class SkipOdd:
    """A picklable skip rule: chunks with an odd index are written already."""

    def __call__(self, file: InputFile, index: int) -> bool:
        return index % 2 == 1


@pytest.mark.parametrize("path", [MASSBANK, DATA / "bad" / "nan_inf_negative.mgf", DATA / "bad" / "empty.mgf"])
def test_same_chunks_and_report_as_in_process(path: Path) -> None:
    here, there = ReadReport(), ReadReport()
    expected = summary(list(request(path, skip=SkipOdd()).chunks(here)))
    with ChunkReader() as reader:
        got = summary(list(reader.chunks(request(path, skip=SkipOdd()), there)))
    assert got == expected
    assert there.to_dict() == here.to_dict() and there.rejects == here.rejects
    assert got[-1][1] and all(not last for _, last, _ in got[:-1])


def test_an_error_arrives_where_it_happens_and_the_next_file_reads() -> None:
    bad = DATA / "bad" / "nan_inf_negative.mgf"
    in_process: list[Chunk] = []
    with pytest.raises(InvalidInputError) as expected:
        for c in request(bad, on_invalid="error", chunk_size=1).chunks(ReadReport()):
            in_process.append(c)
    with ChunkReader() as reader:
        received: list[Chunk] = []
        with pytest.raises(InvalidInputError) as raised:
            for c in reader.chunks(request(bad, on_invalid="error", chunk_size=1), ReadReport()):
                received.append(c)
        assert str(raised.value) == str(expected.value)
        assert (raised.value.path, raised.value.record, raised.value.reason) == (
            expected.value.path, expected.value.record, expected.value.reason)
        assert summary(received) == summary(in_process)
        # a file given up half-way (the job failed it) does not leak into the next one
        first = next(iter(reader.chunks(request(MASSBANK), ReadReport())))
        assert first.index == 0
        again = list(reader.chunks(request(MASSBANK), ReadReport()))
        assert summary(again) == summary(list(request(MASSBANK).chunks(ReadReport())))
