# shellcheck shell=bash
# localstripe (PyPI, pinned, in a venv under target/): a third party's fake
# but stateful Stripe API that payd's Stripe tests charge against. The tests
# start their own instance on a free port (tests/it/localstripe.rs); this
# only installs it and tells them where it is. Sourced by scripts/test.
#
#   PAYD_LOCALSTRIPE   the localstripe executable (default: the venv's)

LOCALSTRIPE_VERSION=1.15.10

ensure_localstripe() {
  local venv=target/localstripe-venv
  if [[ -x "$venv/bin/localstripe" ]] && "$venv/bin/pip" show localstripe 2>/dev/null | grep -q "^Version: $LOCALSTRIPE_VERSION\$"; then
    return 0
  fi
  payd_log "installing localstripe $LOCALSTRIPE_VERSION into $venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || return 1
  "$venv/bin/pip" install --quiet --disable-pip-version-check "localstripe==$LOCALSTRIPE_VERSION" >/dev/null 2>&1 || return 1
}
