# Installs (once) and exports what the tests and the chaos run need. Sourced by scripts/test
# and scripts/chaos from the repository root.
#   - Tansu 0.6.0, the Kafka-protocol broker (cargo install into ~/.cargo/bin; ~12 min once)
#   - Azurite 3.37.0, the Azure Storage emulator (npm, into .tools/ in this checkout)
#   - Debian's prometheus (for promtool and the scrape test), with apt-get
#   - a Python venv in .tools/venv with jsonschema and PyYAML, and the Compose specification
#     schema (from the docker-compose 1.29.2 wheel) to validate docker-compose.yml

step() { printf '\n==> %s\n' "$*"; }

TANSU_VERSION=0.6.0
AZURITE_VERSION=3.37.0

tansu_bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
if [ ! -x "$tansu_bin" ] || ! "$tansu_bin" --version 2>/dev/null | grep -qx "tansu $TANSU_VERSION"; then
  step "installing Tansu $TANSU_VERSION (cargo install; takes ~12 minutes on 2 cores)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
fi

azurite_pkg=.tools/node_modules/azurite/package.json
if [ ! -f "$azurite_pkg" ] || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$azurite_pkg"; then
  step "installing Azurite $AZURITE_VERSION into .tools/"
  mkdir -p .tools
  npm install --prefix .tools --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  step "installing Debian's prometheus"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ ! -x .tools/venv/bin/python ] || ! .tools/venv/bin/python -c 'import jsonschema, yaml' 2>/dev/null; then
  step "creating .tools/venv"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q --disable-pip-version-check jsonschema==4.23.0 PyYAML==6.0.2
fi
if [ ! -f .tools/compose_spec.json ]; then
  step "fetching the Compose specification schema"
  .tools/venv/bin/pip download -q --disable-pip-version-check --no-deps -d .tools/wheels docker-compose==1.29.2
  .tools/venv/bin/python - <<'PY'
import glob, zipfile
wheel = zipfile.ZipFile(glob.glob(".tools/wheels/docker_compose-1.29.2-*.whl")[0])
open(".tools/compose_spec.json", "wb").write(wheel.read("compose/config/compose_spec.json"))
PY
fi

export SLUICE_TANSU_BIN="$tansu_bin"
export SLUICE_AZURITE_BIN="$PWD/.tools/node_modules/.bin/azurite-blob"
export SLUICE_PROMETHEUS_BIN="$(command -v prometheus)"

