#!/usr/bin/env bash
# Set up citytwin in ./.venv (Python 3.11) from pinned versions. Idempotent.
#   scripts/setup.sh          Python environment only (enough for `citytwin demo`)
#   scripts/setup.sh --test   also the servers the integration tests talk to (Mosquitto, Chromium,
#                             PostgreSQL 15 + PostGIS 3: the record tests run on SQLite and on PostgreSQL)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "citytwin needs Python 3.11, found %s" % sys.version' 
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# every pin but dask-kubernetes, which --test installs without its dependencies (below)
NODEPS='^dask-kubernetes=='
REQS=$(mktemp)
trap 'rm -f "$REQS"' EXIT
grep -v -E "$NODEPS" requirements.lock > "$REQS"
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQS"
if [ "${1:-}" = "--test" ]; then
  # the Dask Kubernetes operator's wheel, for its CRD files only (tests/deploy/test_kubernetes.py validates
  # deploy/kubernetes/dask-cluster.yaml against them without importing the package): --no-deps, since its
  # runtime dependencies (kopf, kr8s, kubernetes clients) run the operator, which nothing here does
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps $(grep -E "$NODEPS" requirements.lock)
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null \
  || .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
# compile the numba kernels (h3numba, cleannumba) once now (numba caches the machine code beside
# the source), so the first large ingest of points does not spend ~5-10 s compiling them
.venv/bin/python -c "import numpy as np, pyarrow as pa; from citytwin.foundation import cleannumba, h3numba; h3numba.cells_array(np.array([116.4]), np.array([39.9]), 9); cleannumba.dirty_mask(pa.array(['x']), whitespace=' ', tokens=('',))" \
  || echo "note: numba kernels could not be compiled; ingest computes H3 cells and cleans text in SQL instead" >&2
# and the planning overlay's convex clipping kernel (planning.overlay), the same way
.venv/bin/python -c "import numpy as np, shapely; from citytwin.planning.overlay import intersect_pairs; a = np.array([shapely.box(0, 0, 2, 2)]); intersect_pairs(a, np.array([shapely.box(1, 1, 3, 3)]), np.array([0]), np.array([0]))" \
  || echo "note: the planning overlay's numba kernel could not be compiled now; it compiles on first use" >&2
if [ "${1:-}" = "--test" ]; then
  need=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  # the extension itself (postgresql-15-postgis-3): "postgis" alone is the command-line tools, and with
  # --no-install-recommends it does not bring the extension
  ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql-postgis)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  # Chinese text in the browser tests' screenshots and in PDF reports needs a CJK font
  { command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh | grep -q .; } || need+=(fonts-wqy-zenhei)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
# the operations center's browser libraries (MapLibre GL JS, ECharts) from npm, served locally
# from src/citytwin/service/web/vendor/ (no CDN at run time)
VENDOR=src/citytwin/service/web/vendor
if command -v npm >/dev/null 2>&1; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  mkdir -p "$VENDOR"
  cp web/node_modules/maplibre-gl/dist/maplibre-gl.js web/node_modules/maplibre-gl/dist/maplibre-gl.css \
     web/node_modules/echarts/dist/echarts.min.js "$VENDOR"/
else
  echo "note: npm not found; the web operations center needs MapLibre GL JS and ECharts in $VENDOR (install npm and rerun)" >&2
fi
echo "citytwin set up in $(pwd)/.venv"
