#!/usr/bin/env bash
# A first check of the cluster of up.sh: the node is Ready and a busybox pod
# (the offline registry's docker.io/library/busybox:1.28) runs to completion
# and prints what it was told to. Leaves no pod behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

pod=smoke-busybox
scenario_pod "$pod"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
spec:
  restartPolicy: Never
  containers:
  - name: busybox
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "echo hello from \$(hostname) on noded; cat /proc/self/cgroup | grep -m1 memory"]
YAML
if ! kubectl wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$pod" --timeout=120s >/dev/null; then
	kubectl describe pod "$pod" >&2 || true
	die "pod $pod did not succeed"
fi
out="$(kubectl logs "$pod")"
printf '%s\n' "$out"
grep -q "^hello from $pod on noded\$" <<<"$out" || die "unexpected output of $pod: $out"
say "smoke: node Ready, busybox pod ran: OK"
