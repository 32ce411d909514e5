# GPU image: CUDA runtime, GPU FAISS, the engine installed, `engine` as entrypoint.
# Build: docker build -t ms-engine .   Run: docker run --gpus all -v $PWD:/data ms-engine annotate /data/run.mzML --out /data/out
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /opt/engine
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY indexes ./indexes
# CUDA torch, faiss-gpu-cu12 (extra "gpu", instead of "cpu"'s faiss-cpu), ray (extra "distributed").
RUN pip install "torch==2.5.1" --index-url https://download.pytorch.org/whl/cu124 \
    && pip install ".[gpu,distributed]"
ENTRYPOINT ["engine"]
CMD ["--help"]
