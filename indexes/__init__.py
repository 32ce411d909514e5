"""Vector store: LanceDB tables, FAISS IVF indexes per partition, one search interface."""
