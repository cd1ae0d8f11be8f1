#!/usr/bin/env bash
# Issue 12: the Kubernetes 1.37 pod features that reach noded (issue 11), on
# the cluster of up.sh, each checked from inside the container:
#   - an in-place resize (kubectl patch --subresource resize) lands in the
#     container's cgroup, without a restart, and in the pod's status;
#   - a hostUsers: false pod runs in its own user namespace (root inside,
#     an unprivileged host ID outside);
#   - an image volume: another image's files (the nginx test image's),
#     mounted read-only.
# Leaves nothing behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

resize=feat-resize
userns=feat-userns
imgvol=feat-imagevolume
scenario_objects "pod/$resize" "pod/$userns" "pod/$imgvol"

kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $resize }
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "exec sleep 3600"]
    resizePolicy:
    - { resourceName: cpu, restartPolicy: NotRequired }
    - { resourceName: memory, restartPolicy: NotRequired }
    resources:
      requests: { cpu: 100m, memory: 32Mi }
      limits: { cpu: 200m, memory: 64Mi }
---
apiVersion: v1
kind: Pod
metadata: { name: $userns }
spec:
  terminationGracePeriodSeconds: 1
  hostUsers: false
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "touch /tmp/mine && exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: { name: $imgvol }
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: other
    image: { reference: "registry.k8s.io/e2e-test-images/nginx:1.14-2", pullPolicy: IfNotPresent }
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts: [{ name: other, mountPath: /other }]
YAML
for p in "$resize" "$userns" "$imgvol"; do
	kubectl wait --for=condition=Ready "pod/$p" --timeout=120s >/dev/null ||
		die "pod $p is not Ready: $(kubectl describe pod "$p" | tail -20)"
done

# ---------------------------------------------------------------- resize
# cgroup v1 here: the container sees its own cgroup under /sys/fs/cgroup/<controller>.
cg() { kubectl exec "$resize" -- cat "/sys/fs/cgroup/$1"; }
[[ "$(cg cpu/cpu.cfs_quota_us)/$(cg memory/memory.limit_in_bytes)" == 20000/67108864 ]] ||
	die "before the resize: quota $(cg cpu/cpu.cfs_quota_us), memory $(cg memory/memory.limit_in_bytes)"
cid="$(kubectl get pod "$resize" -o jsonpath='{.status.containerStatuses[0].containerID}')"
kubectl patch pod "$resize" --subresource resize -p \
	'{"spec":{"containers":[{"name":"main","resources":{"requests":{"cpu":"150m","memory":"48Mi"},"limits":{"cpu":"300m","memory":"96Mi"}}}]}}' >/dev/null
want="30000/100663296"
for ((i = 0; i < 60; i++)); do
	got="$(cg cpu/cpu.cfs_quota_us)/$(cg memory/memory.limit_in_bytes)"
	[[ "$got" == "$want" ]] && break
	sleep 1
done
[[ "$got" == "$want" ]] || die "after the resize the cgroup says quota/memory $got, wanted $want: $(kubectl get pod "$resize" -o jsonpath='{.status.conditions}')"
shares="$(cg cpu/cpu.shares)"
((shares == 153)) || die "cpu.shares $shares after the resize, wanted 153 (150m)"
for ((i = 0; i < 30; i++)); do
	lim="$(kubectl get pod "$resize" -o jsonpath='{.status.containerStatuses[0].resources.limits.cpu}/{.status.containerStatuses[0].resources.limits.memory}')"
	[[ "$lim" == 300m/96Mi ]] && break
	sleep 1
done
[[ "$lim" == 300m/96Mi ]] || die "the pod's status reports limits $lim, wanted 300m/96Mi"
[[ "$(kubectl get pod "$resize" -o jsonpath='{.status.containerStatuses[0].containerID}/{.status.containerStatuses[0].restartCount}')" == "$cid/0" ]] ||
	die "the resize restarted the container"
say "resize: cgroup quota 20000 -> 30000, memory 64Mi -> 96Mi, shares 153, status 300m/96Mi, same container: OK"

# ---------------------------------------------------------------- hostUsers: false
map="$(kubectl exec "$userns" -- cat /proc/self/uid_map)"
read -r inside outside count <<<"$map"
[[ "$inside" == 0 && "$outside" -ge 65536 && "$count" == 65536 ]] || die "hostUsers: false: uid_map '$map'"
[[ "$(kubectl exec "$userns" -- id -u)" == 0 ]] || die "hostUsers: false: not root inside"
# The container's processes and files belong to the mapped IDs on the host.
cpid="$(
	"$crictl" --config /dev/null --runtime-endpoint "unix://$C/noded.sock" inspect \
		"$(kubectl get pod "$userns" -o jsonpath='{.status.containerStatuses[0].containerID}' | sed 's|.*://||')" |
		jq -r '.info.pid'
)"
huid="$(awk '/^Uid:/ { print $2 }' "/proc/$cpid/status")"
((huid == outside)) || die "hostUsers: false: the container's PID $cpid runs as host uid $huid, wanted $outside"
say "hostUsers: false: root inside, host uid $huid outside ($map): OK"

# ---------------------------------------------------------------- image volume
kubectl exec "$imgvol" -- test -x /other/usr/sbin/nginx ||
	die "image volume: no /other/usr/sbin/nginx: $(kubectl exec "$imgvol" -- ls -R /other 2>&1 | head)"
kubectl exec "$imgvol" -- grep -q nginx /other/usr/share/nginx/html/index.html || die "image volume: the nginx image's page is not at /other"
if kubectl exec "$imgvol" -- test -e /usr/sbin/nginx 2>/dev/null; then die "image volume: nginx is in the container's own rootfs too"; fi
if kubectl exec "$imgvol" -- touch /other/x 2>/dev/null; then die "image volume is writable"; fi
opts="$(kubectl exec "$imgvol" -- awk '$2 == "/other" { print $4 }' /proc/mounts)"
[[ ",$opts," == *,ro,* ]] || die "image volume mounted '$opts', not read-only"
say "image volume: the nginx image's files at /other, read-only: OK"
