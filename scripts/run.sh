#!/usr/bin/env bash
# The README's "run" command: builds noded and runs it in the foreground
# with its built-in defaults (socket /run/noded/noded.sock, storage under
# /var/lib/noded, CNI config from /etc/cni/net.d, ...). Extra arguments are
# passed to noded unchanged, e.g. `scripts/run.sh --log-level debug`.
#
# noded manages mounts, namespaces and cgroups, so it must run as root.
set -euo pipefail

# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $EUID -ne 0 ]]; then
	die "noded must run as root (it mounts, creates namespaces and cgroups); try: sudo $0 $*"
fi

"$NODED_REPO_ROOT/scripts/install-build-deps.sh"
ensure_go

cd "$NODED_REPO_ROOT"
log "make build"
make build

log "starting bin/noded $* (Ctrl-C stops it)"
# exec: noded becomes this process, so Ctrl-C / SIGTERM reach it directly
# and it shuts down cleanly instead of being orphaned behind a shell.
exec "$NODED_REPO_ROOT/bin/noded" "$@"
