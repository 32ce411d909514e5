# GPU image: the project's pinned torch (2.13.0, its CUDA build), GPU FAISS (extra "gpu", instead of "cpu"'s
# faiss-cpu), Ray (extra "distributed"), `engine` as entrypoint; the model runs on the GPU (--device auto).
# Build: docker build -t ms-engine .
#   another CUDA build of the same torch: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130
# Run:   docker run --gpus all -v $PWD:/data ms-engine annotate /data/run.mzML --out /data/out
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /opt/engine
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY indexes ./indexes
# torch first, from the CUDA index, so the engine's "torch>=..." requirement is already met by the pinned build
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && pip install ".[gpu,distributed]" \
    && python -c "import torch; assert torch.__version__.split('+')[0] == '${TORCH_VERSION}', torch.__version__"
ENTRYPOINT ["engine"]
CMD ["--help"]
