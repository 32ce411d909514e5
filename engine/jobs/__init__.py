"""Batch jobs over many spectrum files: chunking, a resumable output ledger, local and Ray runners."""
