#!/usr/bin/env bash
# Issue 12: noded restarted under a running cluster, on the cluster of
# up.sh:
#   - noded stopped (SIGTERM) and started again at once: no pod or container
#     restarts, kubectl exec and logs work, a new pod starts;
#   - noded killed (SIGKILL) and kept away for 30 s, as a kubelet losing its
#     runtime would see it: the node comes back Ready, the pods kept running
#     (same sandboxes and containers, no restarts), and a container that
#     exited while noded was away is reported with its exit code.
# Leaves nothing behind (noded itself is running again at the end).
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"
# shellcheck source=noded-env.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/noded-env.sh"
# shellcheck disable=SC2034 # read by nt_start_noded
NT_LAUNCH=(setsid)

app=rs-app
late=rs-late
exiter=rs-exiter
# The exiter's container exits when a file appears here (a hostPath).
gate="$(mktemp -d /tmp/noded-cluster-restart.XXXXXX)"
scenario_cleanup() {
	pid_alive noded || cluster_start_noded
	rm -rf "$gate"
}
scenario_objects "deployment/$app" "pod/$late" "pod/$exiter"

kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: { name: $app }
spec:
  replicas: 2
  selector: { matchLabels: { app: $app } }
  template:
    metadata: { labels: { app: $app } }
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: docker.io/library/busybox:1.28
        command: ["sh", "-c", "i=0; while true; do echo beat-\$i; i=\$((i+1)); sleep 1; done"]
        readinessProbe:
          exec: { command: ["true"] }
          periodSeconds: 2
---
apiVersion: v1
kind: Pod
metadata: { name: $exiter }
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{ name: gate, hostPath: { path: $gate, type: Directory } }]
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: gate, mountPath: /gate }]
    command: ["sh", "-c", "until [ -e /gate/go ]; do sleep 0.2; done; exit 3"]
YAML
kubectl rollout status "deployment/$app" --timeout=120s >/dev/null || die "deployment $app is not Available"
kubectl wait --for=condition=Ready "pod/$exiter" --timeout=120s >/dev/null || die "pod $exiter is not Ready"

# snapshot: each pod of the scenario, its container ID and restart count.
snapshot() {
	kubectl get pods -l "app=$app" -o jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{"\n"}{end}' | sort
}
sandboxes() {
	"$crictl" --config /dev/null --runtime-endpoint "unix://$C/noded.sock" pods -q --state ready --label "app=$app" | sort | tr '\n' ' '
}
# healthy WHEN: the node is Ready, the pods and their containers are the
# ones of before, none restarted, and exec and logs work in each.
healthy() {
	local when=$1 p i
	kubectl wait --for=condition=Ready "node/$node_name" --timeout=120s >/dev/null || die "$when: node not Ready again"
	kubectl rollout status "deployment/$app" --timeout=120s >/dev/null || die "$when: deployment $app not Available"
	[[ "$(snapshot)" == "$before" ]] || die "$when: pods changed or restarted: before
$before
now
$(snapshot)"
	[[ "$(sandboxes)" == "$sboxes" ]] || die "$when: the pods' sandboxes changed: before $sboxes, now $(sandboxes)"
	# The kubelet redials its runtime with a backoff of at most 3 s
	# (k8s.io/cri-client): until then its calls fail with Unavailable.
	p="$(kubectl get pods -l "app=$app" -o jsonpath='{.items[0].metadata.name}')"
	for ((i = 0; i < 20; i++)); do
		[[ "$(kubectl exec "$p" -- echo exec-ok 2>/dev/null)" == exec-ok ]] && break
		sleep 0.5
	done
	for p in $(kubectl get pods -l "app=$app" -o jsonpath='{.items[*].metadata.name}'); do
		[[ "$(kubectl exec "$p" -- echo exec-ok)" == exec-ok ]] || die "$when: exec in $p"
		kubectl logs --tail=1 "$p" | grep -q '^beat-' || die "$when: logs of $p"
	done
}
before="$(snapshot)"
sboxes="$(sandboxes)"

# ---------------------------------------------------------------- SIGTERM, at once
read -r pid _ <"$C/pids/noded"
nt_stop_pid "$pid" noded 30
cluster_start_noded
healthy "after a noded restart"
kubectl run "$late" --image=docker.io/library/busybox:1.28 --restart=Never -- sh -c 'echo late-ok' >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$late" --timeout=120s >/dev/null ||
	die "a new pod after the restart did not run: $(kubectl get pod "$late" -o jsonpath='{.status}')"
say "restart: noded stopped and started: $(grep -c . <<<"$before") pods kept their containers (0 restarts), exec and logs work, a new pod ran: OK"

# ---------------------------------------------------------------- SIGKILL, 30 s away
read -r pid _ <"$C/pids/noded"
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
t0=$SECONDS
: >"$gate/go"
sleep 30
# What the kubelet made of it, for the log: its runtime check fails.
ready="$(kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}: {.status.conditions[?(@.type=="Ready")].message}' || true)"
away=$((SECONDS - t0))
cluster_start_noded
healthy "after 30 s without noded"
for ((i = 0; i < 60; i++)); do
	[[ "$(kubectl get pod "$exiter" -o jsonpath='{.status.phase}')" == Failed ]] && break
	sleep 1
done
st="$(kubectl get pod "$exiter" -o jsonpath='{.status.phase}/{.status.containerStatuses[0].state.terminated.exitCode}')"
[[ "$st" == Failed/3 ]] || die "the container that exited while noded was away: $st, wanted Failed/3"
say "restart: node during the outage: $ready"
say "restart: noded killed and away ${away}s: pods kept their containers (0 restarts), exec and logs work; the exit during the outage reported (Failed/3): OK"
