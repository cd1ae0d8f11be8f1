#!/usr/bin/env bash
# Issue 12: container lifecycles the kubelet drives through noded, on the
# cluster of up.sh. Each step asserts the outcome:
#   - an init container runs to completion before the app container, which
#     sees what it wrote;
#   - a restartable init container (a sidecar) starts before the app
#     container and keeps running beside it;
#   - a Job's pod runs to completion and the Job is Complete;
#   - deleting a pod runs its preStop hook, then sends SIGTERM, which the
#     container handles within its termination grace period (not SIGKILL).
# Leaves nothing behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

init=lc-init
side=lc-sidecar
job=lc-job
stop=lc-prestop
# The preStop and SIGTERM handlers write here (a hostPath), where this
# script reads it after the pod is gone.
marks="$(mktemp -d /tmp/noded-cluster-prestop.XXXXXX)"
scenario_cleanup() { rm -rf "$marks"; }
scenario_objects "pod/$init" "pod/$side" "pod/$stop" "job/$job"

kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $init }
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{ name: shared, emptyDir: {} }]
  initContainers:
  - name: setup
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: shared, mountPath: /shared }]
    command: ["sh", "-c", "echo written-by-init >/shared/from-init"]
  containers:
  - name: app
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: shared, mountPath: /shared }]
    command: ["sh", "-c", "cat /shared/from-init; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: { name: $side }
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{ name: shared, emptyDir: {} }]
  initContainers:
  - name: sidecar
    image: docker.io/library/busybox:1.28
    restartPolicy: Always
    volumeMounts: [{ name: shared, mountPath: /shared }]
    command: ["sh", "-c", "while true; do date +%s >/shared/beat; sleep 1; done"]
    startupProbe:
      exec: { command: ["test", "-f", "/shared/beat"] }
      periodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: shared, mountPath: /shared }]
    # Started only after the sidecar's startup probe passed: the beat file is
    # there from its first instant.
    command: ["sh", "-c", "if [ -f /shared/beat ]; then echo sidecar-first; else echo sidecar-missing; fi; exec sleep 3600"]
---
apiVersion: batch/v1
kind: Job
metadata: { name: $job }
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: docker.io/library/busybox:1.28
        command: ["sh", "-c", "i=0; while [ \$i -lt 5 ]; do i=\$((i+1)); done; echo job-done-\$i"]
---
apiVersion: v1
kind: Pod
metadata: { name: $stop }
spec:
  terminationGracePeriodSeconds: 20
  volumes: [{ name: marks, hostPath: { path: $marks, type: Directory } }]
  containers:
  - name: app
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: marks, mountPath: /marks }]
    # PID 1 handles SIGTERM: it notes it, takes a second to "drain", and exits 0.
    command: ["sh", "-c", "trap 'echo sigterm >>/marks/log; sleep 1; echo drained >>/marks/log; exit 0' TERM; echo started >>/marks/log; while true; do sleep 0.2; done"]
    lifecycle:
      preStop:
        exec: { command: ["sh", "-c", "echo prestop >>/marks/log; sleep 1"] }
YAML

# ---------------------------------------------------------------- init
kubectl wait --for=condition=Ready "pod/$init" --timeout=120s >/dev/null ||
	die "pod $init is not Ready: $(kubectl get pod "$init" -o jsonpath='{.status}')"
st="$(kubectl get pod "$init" -o jsonpath='{.status.initContainerStatuses[0].state.terminated.exitCode}/{.status.initContainerStatuses[0].state.terminated.reason}')"
[[ "$st" == 0/Completed ]] || die "init container: $st"
[[ "$(kubectl logs "$init" -c app)" == written-by-init ]] || die "app after init: '$(kubectl logs "$init" -c app 2>&1)'"
say "lifecycle: init container completed (0/Completed) before the app, which read its file: OK"

# ---------------------------------------------------------------- sidecar
kubectl wait --for=condition=Ready "pod/$side" --timeout=120s >/dev/null ||
	die "pod $side is not Ready: $(kubectl get pod "$side" -o jsonpath='{.status}')"
[[ "$(kubectl logs "$side" -c app)" == sidecar-first ]] || die "sidecar: app says '$(kubectl logs "$side" -c app 2>&1)'"
sleep 3
st="$(kubectl get pod "$side" -o jsonpath='{.status.initContainerStatuses[0].started}/{.status.initContainerStatuses[0].restartCount}/{.status.initContainerStatuses[0].state.running.startedAt}')"
[[ "$st" == true/0/?* ]] || die "sidecar status: $st"
a="$(kubectl exec "$side" -c app -- cat /shared/beat)"
sleep 2
b="$(kubectl exec "$side" -c app -- cat /shared/beat)"
((b > a)) || die "sidecar stopped beating beside the app ($a, then $b)"
say "lifecycle: sidecar started before the app and keeps running beside it (started, 0 restarts): OK"

# ---------------------------------------------------------------- job
kubectl wait --for=condition=Complete "job/$job" --timeout=120s >/dev/null ||
	die "job $job did not complete: $(kubectl get job "$job" -o jsonpath='{.status}')"
[[ "$(kubectl get job "$job" -o jsonpath='{.status.succeeded}')" == 1 ]] || die "job: $(kubectl get job "$job" -o jsonpath='{.status}')"
[[ "$(kubectl logs "job/$job")" == job-done-5 ]] || die "job log: '$(kubectl logs "job/$job" 2>&1)'"
say "lifecycle: job completed (succeeded 1, log job-done-5): OK"

# ---------------------------------------------------------------- preStop
kubectl wait --for=condition=Ready "pod/$stop" --timeout=120s >/dev/null ||
	die "pod $stop is not Ready: $(kubectl get pod "$stop" -o jsonpath='{.status}')"
uid="$(kubectl get pod "$stop" -o jsonpath='{.metadata.uid}')"
t0=$SECONDS
kubectl delete pod "$stop" --wait=true --timeout=60s >/dev/null
took=$((SECONDS - t0))
got="$(tr '\n' ' ' <"$marks/log")"
[[ "$got" == "started prestop sigterm drained " ]] ||
	die "preStop/SIGTERM order: '$got' (pod $uid deleted in ${took}s)"
# "drained" is written a second after SIGTERM, by the handler: the container
# was let finish, not killed at once.
say "lifecycle: delete ran preStop, then SIGTERM, handled in time (${took}s, grace 20s): OK"
