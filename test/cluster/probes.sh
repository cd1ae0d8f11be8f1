#!/usr/bin/env bash
# Issue 12: the kubelet's probes, on the cluster of up.sh:
#   - readiness and liveness probes of the four kinds (httpGet, tcpSocket,
#     exec, grpc), one container each, make the pod Ready with no restart;
#   - a readiness probe that starts failing takes the container (and the
#     pod) out of Ready, and back when it passes again;
#   - a liveness probe that fails (exec, and grpc once the server says
#     NOT_SERVING) restarts that container, once: restartCount 1, the killed
#     run's state kept as lastState.
# The exec probes are ExecSync calls to noded; the others are the kubelet's
# own connections to the pod's IP, which noded's CNI set-up must make
# reachable. Leaves nothing behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

pod=probes
live=probes-liveness
agnhost=registry.k8s.io/e2e-test-images/agnhost:2.66.1
scenario_objects "pod/$pod" "pod/$live"

kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $pod }
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: http
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "mkdir -p /www && echo ok >/www/healthz && exec httpd -f -p 8080 -h /www"]
    readinessProbe: { httpGet: { path: /healthz, port: 8080 }, periodSeconds: 1 }
    livenessProbe: { httpGet: { path: /healthz, port: 8080 }, periodSeconds: 2 }
  - name: tcp
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8090 -h /www"]
    readinessProbe: { tcpSocket: { port: 8090 }, periodSeconds: 1 }
    livenessProbe: { tcpSocket: { port: 8090 }, periodSeconds: 2 }
  - name: exec
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "touch /tmp/ready && exec sleep 3600"]
    readinessProbe: { exec: { command: ["cat", "/tmp/ready"] }, periodSeconds: 1, failureThreshold: 1 }
    livenessProbe: { exec: { command: ["true"] }, periodSeconds: 2 }
  - name: grpc
    image: $agnhost
    args: ["grpc-health-checking", "--port", "5000", "--http-port", "8085"]
    readinessProbe: { grpc: { port: 5000 }, periodSeconds: 1 }
    livenessProbe: { grpc: { port: 5000 }, periodSeconds: 1, failureThreshold: 2 }
---
apiVersion: v1
kind: Pod
metadata: { name: $live }
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{ name: state, emptyDir: {} }]
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: state, mountPath: /state }]
    # The first run stops being alive after 3 s; the run after the restart
    # stays alive.
    command: ["sh", "-c", "n=\$((\$(cat /state/n 2>/dev/null || echo 0) + 1)); echo \$n >/state/n; touch /tmp/alive; if [ \$n = 1 ]; then sleep 3; rm /tmp/alive; fi; exec sleep 3600"]
    livenessProbe: { exec: { command: ["cat", "/tmp/alive"] }, periodSeconds: 1, failureThreshold: 2 }
YAML
kubectl wait --for=condition=Ready "pod/$pod" --timeout=120s >/dev/null ||
	die "pod $pod is not Ready: $(kubectl get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}={.ready} {end}'; kubectl describe pod "$pod" | tail -15)"
# status FIELD: NAME=FIELD for each container.
status() {
	kubectl get pod "$pod" -o jsonpath="{range .status.containerStatuses[*]}{.name}={$1} {end}"
}
sleep 4
[[ "$(status .ready)" == "exec=true grpc=true http=true tcp=true " ]] || die "readiness: $(status .ready)"
[[ "$(status .restartCount)" == "exec=0 grpc=0 http=0 tcp=0 " ]] || die "restarts with passing liveness probes: $(status .restartCount)"
say "probes: httpGet, tcpSocket, exec and grpc readiness and liveness pass: Ready, 0 restarts: OK"

# ---------------------------------------------------------------- readiness flips
kubectl exec "$pod" -c exec -- rm /tmp/ready
kubectl wait --for=condition=Ready=false "pod/$pod" --timeout=30s >/dev/null || die "a failing readiness probe left the pod Ready"
[[ "$(status .ready)" == "exec=false grpc=true http=true tcp=true " ]] || die "readiness after the exec probe failed: $(status .ready)"
kubectl exec "$pod" -c exec -- touch /tmp/ready
kubectl wait --for=condition=Ready "pod/$pod" --timeout=30s >/dev/null || die "the pod did not become Ready again"
say "probes: a failing exec readiness probe took the pod out of Ready and back: OK"

# ---------------------------------------------------------------- liveness restarts
# wait_restarted POD CONTAINER: its restartCount reaches 1 and it runs again.
wait_restarted() {
	local p=$1 c=$2 i st
	for ((i = 0; i < 90; i++)); do
		st="$(kubectl get pod "$p" -o jsonpath="{.status.containerStatuses[?(@.name==\"$c\")].restartCount}/{.status.containerStatuses[?(@.name==\"$c\")].state.running.startedAt}")"
		[[ "$st" == 1/?* ]] && return 0
		sleep 1
	done
	die "$p/$c was not restarted once by its liveness probe: $st"
}
wait_restarted "$live" main
ip="$(kubectl get pod "$pod" -o jsonpath='{.status.podIP}')"
curl -sS --max-time 5 "http://$ip:8085/make-not-serving" >/dev/null || die "could not make the grpc server NOT_SERVING"
wait_restarted "$pod" grpc
# No second restart: the new runs stay alive.
sleep 6
st="$(kubectl get pod "$live" -o jsonpath='{.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].lastState.terminated.exitCode}')"
[[ "$st" == 1/137 ]] || die "liveness restart: restartCount/last exit code $st, wanted 1/137 (killed)"
[[ "$(status .restartCount)" == "exec=0 grpc=1 http=0 tcp=0 " ]] || die "grpc liveness restart: $(status .restartCount)"
kubectl get events --field-selector "involvedObject.name=$live,reason=Unhealthy" -o jsonpath='{.items[*].message}' |
	grep -q 'Liveness probe failed' || die "no 'Liveness probe failed' event for $live"
say "probes: failing exec and grpc liveness probes restarted their containers once (restartCount 1, killed run exit 137): OK"
