# Sourced by scripts/test and scripts/production-shape: install Debian packages the suite
# needs when a command is missing and we may (root with apt-get); otherwise say which.
# need_packages command:package ...
need_packages() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null || {
      apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
    }
  else
    echo "missing: ${missing[*]} (install them with your package manager)" >&2
  fi
}
