#!/usr/bin/env bash
# The kubelet's container checkpoint API against noded (issue 17):
# POST https://<node>:10250/checkpoint/<namespace>/<pod>/<container>, with
# the API server's kubelet client certificate (as `kubectl` would reach it
# through the API server's node proxy). The kubelet calls CheckpointContainer
# with a location under <root-dir>/checkpoints and answers the archive's
# path; the counter pod keeps running, without a restart, and the archive is
# one checkpointctl reads as noded's. Skips, saying so, without a CRIU that
# passes `criu check` (the test dependencies build one).
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

if ! cluster_criu >/dev/null; then
	say "checkpoint: SKIP: no CRIU passing 'criu check' (test/criu/build-criu.sh builds one)"
	exit 0
fi
checkpointctl="$repo/_build/tools/checkpointctl"
pki="$C/pki"

pod=ckpt-counter
scenario_pod "$pod"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: counter
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "i=0; while true; do echo \$i; i=\$((i+1)); sleep 0.2; done"]
YAML
kubectl wait --for=condition=Ready "pod/$pod" --timeout=120s >/dev/null || {
	kubectl describe pod "$pod" >&2 || true
	die "pod $pod did not become Ready"
}

answer="$(curl -sS --fail-with-body --max-time 120 --cacert "$pki/ca.crt" \
	--cert "$pki/apiserver-kubelet-client.crt" --key "$pki/apiserver-kubelet-client.key" \
	-X POST "https://$node_ip:$kubelet_port/checkpoint/default/$pod/counter")" ||
	die "the kubelet's checkpoint call failed: $answer"
archive="$(jq -r '.items[0] // empty' <<<"$answer")"
[[ -n "$archive" && -s "$archive" ]] || die "the kubelet answered $answer, but no archive is there"
case "$archive" in "$C/kubelet/checkpoints/"*) ;; *) die "archive $archive is not under the kubelet's checkpoints directory" ;; esac
say "checkpoint: the kubelet wrote $archive ($(stat -c %s "$archive") bytes)"
# The listing first: grep -q stopping early would SIGPIPE tar, and
# pipefail would take that for a missing member.
members="$(tar -tf "$archive")" || die "tar cannot read $archive"
for member in checkpoint/ config.dump spec.dump rootfs-diff.tar; do
	grep -q "^\(\./\)\?$member" <<<"$members" || die "archive $archive has no $member"
done
if [[ -x "$checkpointctl" ]]; then
	shown="$("$checkpointctl" show "$archive" 2>&1)" || die "checkpointctl show $archive: $shown"
	grep -q counter <<<"$shown" || die "checkpointctl show does not name the container: $shown"
else
	say "checkpoint: $checkpointctl not built; archive checked with tar only"
fi

# Left running (the kubelet's checkpoint is forensic): the same process
# goes on counting, and the container did not restart.
before="$(kubectl logs "$pod" | tail -n 1)"
sleep 1
after="$(kubectl logs "$pod" | tail -n 1)"
((after > before)) || die "the counter stopped after the checkpoint ($before, then $after)"
restarts="$(kubectl get pod "$pod" -o jsonpath='{.status.containerStatuses[0].restartCount}')"
[[ "$restarts" == 0 ]] || die "the container restarted $restarts times"
rm -f "$archive"
say "checkpoint: kubelet /checkpoint through noded, archive read by checkpointctl, pod still running: OK"
