# Installs (from Debian's packages, if missing) and starts the services the test-suite uses:
# PostgreSQL (the production database), Mosquitto (the MQTT broker, started per test by the suite)
# and Chromium with CJK fonts (browser tests, driven by Playwright with
# executable_path=/usr/bin/chromium). Sourced by .ci/run; usable by hand: `. .ci/services.sh; start_services`.
PG_TEST_USER=medloop
PG_TEST_PASSWORD=medloop

_need() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }

install_packages() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
  _need mosquitto /usr/sbin/mosquitto || missing+=(mosquitto mosquitto-clients)
  _need mosquitto_pub /usr/bin/mosquitto_pub || missing+=(mosquitto-clients)
  _need chromium /usr/bin/chromium || missing+=(chromium)
  # Chinese glyphs for the 简体中文 pages in browser tests and screenshots
  [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_postgres() {
  local ver
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
    pg_createcluster "$ver" main >/dev/null
  fi
  local cluster
  cluster=$(pg_lsclusters -h | head -1 | awk '{print $1" "$2}')
  pg_ctlcluster $cluster start 2>/dev/null || true
  for _ in $(seq 1 30); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
  done
  su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='$PG_TEST_USER'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"create role $PG_TEST_USER login createdb password '$PG_TEST_PASSWORD'\""
  local port
  port=$(pg_lsclusters -h | head -1 | awk '{print $3}')
  export MEDLOOP_TEST_PG_URL="postgresql+psycopg://$PG_TEST_USER:$PG_TEST_PASSWORD@127.0.0.1:$port/postgres"
  echo "PostgreSQL ready: MEDLOOP_TEST_PG_URL=${MEDLOOP_TEST_PG_URL}"
}

start_services() {
  install_packages
  start_postgres
  export MEDLOOP_REQUIRE_SERVICES=1
}
