#!/usr/bin/env bash
# Issue 13's real-kubelet check, on the cluster of up.sh started with
# NODED_CLUSTER_KUBELET_GATES=PodAndContainerStatsFromCRI=true,EventedPLEG=true,CRIListStreaming=true
# (e2e.sh does that): a pod that burns some CPU, then exits 3.
#   - the kubelet's /stats/summary shows the pod's CPU, memory and network
#     figures, read from noded (PodAndContainerStatsFromCRI);
#   - the kubelet sees the exit (phase Failed, exit code 3);
#   - the kubelet's evented PLEG is connected to noded's GetContainerEvents
#     with no connection error, and received events (its latency
#     histogram counts them);
#   - noded served the kubelet's lists through the Stream* RPCs.
# Leaves no pod behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

pod=obs-busybox
scenario_pod "$pod"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $pod
spec:
  restartPolicy: Never
  containers:
  - name: work
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "i=0; while [ \$i -lt 200000 ]; do i=\$((i+1)); done; sleep 15; exit 3"]
YAML
kubectl wait --for=jsonpath='{.status.phase}'=Running "pod/$pod" --timeout=120s >/dev/null ||
	die "pod $pod is not Running"

# The summary API samples on the kubelet's housekeeping period: poll.
figures=""
for ((i = 0; i < 30; i++)); do
	figures="$(kubectl get --raw "/api/v1/nodes/$node_name/proxy/stats/summary" | jq -r --arg p "$pod" '
		.pods[] | select(.podRef.name == $p) |
		[(.cpu.usageCoreNanoSeconds // 0), (.memory.workingSetBytes // 0), (.network.rxBytes // 0),
		 ((.containers // [])[] | select(.name == "work") | (.cpu.usageCoreNanoSeconds // 0))] | @tsv')"
	read -r cpu mem rx ctr_cpu <<<"$figures" || true
	if ((${cpu:-0} > 0 && ${mem:-0} > 0 && ${rx:-0} > 0 && ${ctr_cpu:-0} > 0)); then
		break
	fi
	sleep 1
done
((${cpu:-0} > 0 && ${mem:-0} > 0 && ${rx:-0} > 0 && ${ctr_cpu:-0} > 0)) ||
	die "/stats/summary lacks the pod's figures (cpu ns, working set, rx bytes, container cpu ns): '$figures'"
say "summary: pod cpu ${cpu} ns, working set ${mem} B, eth rx ${rx} B; container cpu ${ctr_cpu} ns"

kubectl wait --for=jsonpath='{.status.phase}'=Failed "pod/$pod" --timeout=120s >/dev/null ||
	die "the kubelet did not see $pod exit"
code="$(kubectl get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')"
[[ "$code" == 3 ]] || die "exit code of $pod: '$code', want 3"

metrics="$(kubectl get --raw "/api/v1/nodes/$node_name/proxy/metrics")"
errors="$(awk '$1 == "kubelet_evented_pleg_connection_error_count" { print $2 }' <<<"$metrics")"
events="$(awk '$1 == "kubelet_evented_pleg_connection_latency_seconds_count" { print $2 }' <<<"$metrics")"
[[ "${errors:-x}" == 0 ]] || die "evented PLEG connection errors: '${errors:-none reported}' (is EventedPLEG on?)"
((${events:-0} > 0)) || die "the kubelet's evented PLEG received no event"
say "evented PLEG: ${events} events received, 0 connection errors"

for rpc in StreamPodSandboxes StreamContainers StreamPodSandboxStats GetContainerEvents; do
	grep -q "method=$rpc" "$C/logs/noded.log" || die "noded's log shows no $rpc call (is CRIListStreaming on?)"
done
say "observability: summary figures, exit seen, evented PLEG and Stream* lists in use: OK"
