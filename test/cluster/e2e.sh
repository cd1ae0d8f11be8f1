#!/usr/bin/env bash
# make cluster-e2e: brings the one-node cluster up (with the kubelet
# feature gates that reach noded's newer RPCs), runs the scenarios, and
# always brings it down again, checking that nothing is left. Exits
# non-zero if a scenario failed or something was left behind.
#
# Scenarios (each a script of its own, run against the live cluster):
#   smoke.sh          node Ready; a busybox pod runs to completion
#   observability.sh  /stats/summary from CRI stats, the evented PLEG on
#                     GetContainerEvents, Stream* lists (issue 13)
#   workloads.sh      a Deployment Available, rolled and scaled; a
#                     ClusterIP Service through kube-proxy (issue 12)
#   streaming.sh      kubectl exec/-i/-it, attach/-i/-it, logs -f and
#                     --previous, cp, port-forward, debug (issue 12)
#   probes.sh         the four probe kinds; liveness restarts (issue 12)
#   lifecycle.sh      init and sidecar containers, a Job, preStop and
#                     graceful termination (issue 12)
#   volumes.sh        emptyDir (disk, memory), configMap, secret, service-
#                     account and projected volumes (issue 12)
#   features.sh       in-place resize, hostUsers: false, an image volume
#                     (issue 12, on issue 11's features)
#   checkpoint.sh     the kubelet's /checkpoint API through noded's
#                     CheckpointContainer, read by checkpointctl (issue 17)
#   restart.sh        noded restarted, and away for 30 s, under running
#                     pods (issue 12); last: it restarts noded
set -uo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=config.sh source-path=SCRIPTDIR
source "$dir/config.sh"
# One cluster at a time on the machine: wait for another user's to go.
cluster_lock "$@"
# The test registry serves the e2e images (agnhost: probes.sh's grpc
# server) when given agnhost (make cluster-tools builds it).
[[ -x "$tools/agnhost" ]] || die "$tools/agnhost missing; run make cluster-tools"
export NODED_TESTREGISTRY_AGNHOST="$tools/agnhost"
export NODED_CLUSTER_KUBELET_GATES="${NODED_CLUSTER_KUBELET_GATES:-PodAndContainerStatsFromCRI=true,EventedPLEG=true,CRIListStreaming=true}"

rc=0
if "$dir/up.sh"; then
	for s in smoke.sh observability.sh workloads.sh streaming.sh probes.sh lifecycle.sh volumes.sh \
		features.sh checkpoint.sh restart.sh; do
		echo "[cluster-e2e] $s"
		if ! "$dir/$s"; then
			echo "[cluster-e2e] FAIL: $s" >&2
			rc=1
		fi
	done
else
	echo "[cluster-e2e] FAIL: the cluster did not come up" >&2
	rc=1
fi
"$dir/down.sh" || rc=1
if ((rc == 0)); then echo "[cluster-e2e] PASS"; fi
exit "$rc"
