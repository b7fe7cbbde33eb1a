# Installs (once) and exports what the tests and the chaos run need. Sourced by scripts/test
# and scripts/chaos from the repository root.
#   - Tansu 0.6.0, the Kafka-protocol broker (cargo install into ~/.cargo/bin; ~12 min once)
#   - Azurite 3.37.0, the Azure Storage emulator (npm, into .tools/ in this checkout)
#   - Debian's prometheus (for promtool and the scrape test), with apt-get
#   - a Python venv in .tools/venv with jsonschema and PyYAML, and the Compose specification
#     schema (from the docker-compose 1.29.2 wheel) to validate docker-compose.yml; and the
#     independent readers the format round-trip test uses: pyarrow, fastavro, pandavro,
#     zstandard (+ cramjam, backports.zstd for fastavro's codecs), and avsc for Node; moto's
#     S3 server for S3 destinations; kubernetes-validate and the KEDA / Prometheus Operator CRD
#     models (npm) for the Kubernetes manifests

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

if ! pkg-config --exists openssl 2>/dev/null; then
  step "installing Debian's libssl-dev and pkg-config (librdkafka's TLS, for Event Hubs' SASL_SSL)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null
fi

if ! command -v gpg >/dev/null; then
  step "installing Debian's gnupg (decrypts the PGP test's files)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnupg >/dev/null
fi

if ! command -v openssl >/dev/null; then
  step "installing Debian's openssl (certificates for Azurite over HTTPS)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  step "installing Debian's prometheus"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

AVSC_VERSION=5.7.7
if [ ! -f .tools/node_modules/avsc/package.json ] || ! grep -q "\"version\": \"$AVSC_VERSION\"" .tools/node_modules/avsc/package.json; then
  step "installing avsc $AVSC_VERSION into .tools/ (the seed's Node.js Avro reader)"
  npm install --prefix .tools --no-audit --no-fund --loglevel=error "avsc@$AVSC_VERSION"
fi

# The CRD models of KEDA and the Prometheus Operator, for the Kubernetes manifests' check.
KEDA_MODELS_VERSION=2.0.0
PROM_MODELS_VERSION=6.0.0
if [ ! -f .tools/node_modules/@kubernetes-models/keda/package.json ] \
  || ! grep -q "\"version\": \"$KEDA_MODELS_VERSION\"" .tools/node_modules/@kubernetes-models/keda/package.json \
  || [ ! -f .tools/node_modules/@kubernetes-models/prometheus-operator/package.json ]; then
  step "installing the KEDA and Prometheus Operator CRD models into .tools/"
  npm install --prefix .tools --no-audit --no-fund --loglevel=error \
    "@kubernetes-models/keda@$KEDA_MODELS_VERSION" "@kubernetes-models/prometheus-operator@$PROM_MODELS_VERSION"
fi

PY_PACKAGES="jsonschema==4.23.0 PyYAML==6.0.2 pyarrow==26.0.1 fastavro==1.13.1 pandavro==1.9.0 zstandard==0.25.0 cramjam==2.14.0 backports.zstd==1.8.0 moto[server]==5.2.5 kubernetes-validate==1.31.0 deltalake==1.6.6"
if [ ! -x .tools/venv/bin/python ] || ! .tools/venv/bin/python -c 'import jsonschema, yaml, pyarrow, fastavro, pandavro, zstandard, cramjam, backports.zstd, moto.server, kubernetes_validate, deltalake' 2>/dev/null; then
  step "creating .tools/venv (schema checks and independent file readers)"
  python3 -m venv .tools/venv
  # shellcheck disable=SC2086
  .tools/venv/bin/pip install -q --disable-pip-version-check $PY_PACKAGES
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
export SLUICE_PYTHON="$PWD/.tools/venv/bin/python"
export SLUICE_MOTO_BIN="$PWD/.tools/venv/bin/moto_server"
export SLUICE_AZURITE_BIN="$PWD/.tools/node_modules/.bin/azurite-blob"
export SLUICE_PROMETHEUS_BIN="$(command -v prometheus)"

