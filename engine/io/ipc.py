"""One Arrow record batch as Arrow IPC stream bytes and back: how chunks cross process boundaries (the
local runner's reader process, Ray Data's read tasks)."""

from __future__ import annotations

import io

import pyarrow as pa


def batch_to_ipc(batch: pa.RecordBatch) -> bytes:
    """``batch`` as the bytes of an Arrow IPC stream."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def batch_from_ipc(data: bytes) -> pa.RecordBatch:
    """The record batch of :func:`batch_to_ipc`'s bytes (one batch, an empty one when the stream holds none)."""
    table = pa.ipc.open_stream(data).read_all().combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
