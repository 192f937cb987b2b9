#!/usr/bin/env bash
# Install what the Triton serving tests and benchmarks need into a virtual environment.
#
#   .ci/install_triton.sh [VENV] [--perf-analyzer]
#
# Idempotent: each step is skipped when its result is already there.
#  1. Into VENV (default: .venv): nvidia-pytriton (the tritonserver 2.51 binary with the Python
#     backend), tritonclient[grpc]==2.51.0 (the gRPC client and bin/perf_analyzer) and
#     nvidia-cuda-runtime-cu12 (libcudart.so.12, which perf_analyzer links against; no GPU needed).
#     Installed with --no-deps plus their real run-time deps: their metadata pins numpy<2 and
#     protobuf<5, which would downgrade the project's numpy/opencv/onnx; both clients work with
#     the project's numpy 2 and protobuf.
#  2. VENV/triton-backend-env: the Python environment that Triton's Python-backend stub embeds
#     (TritonServer puts its bin first on PATH). The 2.51 stub was compiled against NumPy 1.x and
#     corrupts tensors under NumPy 2, so this environment has numpy<2 and the project's other
#     run-time dependencies (same onnxruntime version as VENV, so served results match in-process
#     ones). adinspect itself is not installed there: TritonServer exposes the launcher's copy.
#  3. With --perf-analyzer: Debian's libb64-0d (perf_analyzer's one missing system library).
#     An apt failure is only a warning: the perf_analyzer steps are then skipped by the tests.
set -euo pipefail

VENV=.venv
WANT_PERF=0
for arg in "$@"; do
    case "$arg" in
        --perf-analyzer) WANT_PERF=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) VENV="$arg" ;;
    esac
done
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "install_triton: no Python at $PY (create the venv first)" >&2; exit 2; }

TRITONCLIENT_VERSION=2.51.0
PYTRITON_VERSION=0.7.0

have_version() {  # have_version DIST VERSION -> 0 when DIST==VERSION is installed in VENV
    "$PY" - "$1" "$2" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
try:
    ok = m.version(sys.argv[1]) == sys.argv[2] or sys.argv[2] == "*"
except m.PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
EOF
}

# 1. Triton server binary, client, libcudart into VENV.
need=()
have_version nvidia-pytriton "$PYTRITON_VERSION" || need+=("nvidia-pytriton==$PYTRITON_VERSION")
have_version tritonclient "$TRITONCLIENT_VERSION" || need+=("tritonclient==$TRITONCLIENT_VERSION")
have_version nvidia-cuda-runtime-cu12 "*" || need+=("nvidia-cuda-runtime-cu12")
if [ ${#need[@]} -gt 0 ]; then
    echo "install_triton: installing ${need[*]} into $VENV"
    "$PY" -m pip install --quiet --no-deps "${need[@]}"
fi
# tritonclient[grpc]'s own run-time deps, minus its numpy<2 / protobuf<5 pins.
"$PY" - <<'EOF' || "$PY" -m pip install --quiet "grpcio>=1.41" "python-rapidjson>=0.9.1" "urllib3>=2.0.7" "packaging>=14.1" "protobuf>=4.25.8"
import grpc, rapidjson, urllib3, packaging, google.protobuf  # noqa: F401
EOF
"$PY" -c "import tritonclient.grpc" || { echo "install_triton: tritonclient.grpc does not import" >&2; exit 1; }

# 2. The Python backend's environment (numpy<2).
BACKEND_ENV="$VENV/triton-backend-env"
ORT_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("onnxruntime"))')"
backend_env_ok() {
    [ -x "$BACKEND_ENV/bin/python3" ] && "$BACKEND_ENV/bin/python3" - "$ORT_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
import cv2, numpy, onnxruntime, pydantic, yaml  # noqa: F401
sys.exit(0 if numpy.__version__.startswith("1.") and m.version("onnxruntime") == sys.argv[1] else 1)
EOF
}
if ! backend_env_ok; then
    echo "install_triton: creating the Python-backend environment $BACKEND_ENV"
    BASE_PY="$("$PY" -c 'import sys; print(sys._base_executable)')"
    "$BASE_PY" -m venv --clear "$BACKEND_ENV"
    # The project's own run-time dependencies, under the constraints the 2.51 stub needs.
    mapfile -t DEPS < <("$PY" - "$ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    for dep in tomllib.load(f)["project"]["dependencies"]:
        print(dep)
EOF
    )
    CONSTRAINTS="$(mktemp)"
    trap 'rm -f "$CONSTRAINTS"' EXIT
    printf '%s\n' "numpy<2" "opencv-python-headless<4.12" "onnxruntime==$ORT_VERSION" > "$CONSTRAINTS"
    "$BACKEND_ENV/bin/python3" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    "$BACKEND_ENV/bin/python3" -m pip install --quiet -c "$CONSTRAINTS" "numpy<2" "${DEPS[@]}"
    backend_env_ok || { echo "install_triton: $BACKEND_ENV is not usable after install" >&2; exit 1; }
fi

# 3. perf_analyzer's system library.
if [ "$WANT_PERF" = 1 ]; then
    if ! ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d'; then
        echo "install_triton: installing libb64-0d (for perf_analyzer)"
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libb64-0d; } >/dev/null 2>&1; then
            echo "install_triton: WARNING: could not install libb64-0d; perf_analyzer will not run" >&2
        fi
    fi
fi
echo "install_triton: ready ($VENV: nvidia-pytriton $PYTRITON_VERSION, tritonclient $TRITONCLIENT_VERSION;" \
     "backend env $BACKEND_ENV)"
