# Sourced by the shell jobs (main.sh, atari.sh): `--help` prints the job's leading comment block (its
# usage and the variables it reads) and exits 0; any other argument is one line on stderr and exit 2.
usage_or_refuse() {
  local script=$1; shift
  if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -euo/p' "$script" | sed -n 's/^# \{0,1\}//p'
    exit 0
  fi
  if [ $# -gt 0 ]; then
    local name; name=$(basename "$script")
    echo "error: $name takes no arguments (got: $*); set its variables instead, e.g. MAIN_SEED=1 bash scripts/$name; see --help" >&2
    exit 2
  fi
}
