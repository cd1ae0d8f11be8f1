#!/usr/bin/env bash
# Issue 12's first workload scenarios, on the cluster of up.sh:
#   - a Deployment of 3 replicas (busybox httpd, a TCP readiness probe)
#     becomes Available;
#   - a ClusterIP Service reaches its pods through kube-proxy, from another
#     pod;
#   - the Deployment is rolled to a new image, every pod then runs it;
#   - it scales to 0 (no pod left) and back to 3 (Available again).
# Leaves nothing behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

app=web
client=web-client
scenario_objects "deployment/$app" "service/$app" "pod/$client"

kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: { name: $app }
spec:
  replicas: 3
  selector: { matchLabels: { app: $app } }
  template:
    metadata: { labels: { app: $app } }
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: $app
        image: docker.io/library/busybox:1.28
        command: ["sh", "-c", "mkdir -p /www && echo hi-from-\$(hostname) >/www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{ containerPort: 8080 }]
        readinessProbe:
          tcpSocket: { port: 8080 }
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: { name: $app }
spec:
  selector: { app: $app }
  ports: [{ port: 80, targetPort: 8080 }]
YAML

available() {
	kubectl rollout status "deployment/$app" --timeout=120s >/dev/null ||
		die "deployment $app did not become Available: $(kubectl get pods -l app=$app -o wide 2>&1)"
	[[ "$(kubectl get deployment "$app" -o jsonpath='{.status.availableReplicas}')" == 3 ]] ||
		die "deployment $app: $(kubectl get deployment "$app" -o jsonpath='{.status}')"
}
available
say "workloads: deployment $app Available (3 replicas)"

ip="$(kubectl get service "$app" -o jsonpath='{.spec.clusterIP}')"
[[ -n "$ip" ]] || die "service $app has no cluster IP"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $client }
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- -T 3 http://$ip/ && exit 0; sleep 1; done; exit 1"]
YAML
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$client" --timeout=120s >/dev/null ||
	die "pod $client could not reach service $app at $ip: $(kubectl logs "$client" 2>&1)"
out="$(kubectl logs "$client")"
grep -q "^hi-from-$app-" <<<"$out" || die "service $app answered: '$out'"
say "workloads: service $app ($ip) answered through kube-proxy: $out"

kubectl set image "deployment/$app" "$app=docker.io/library/busybox:1.37.0" >/dev/null
available
# Available counts the new pods; the old ones may still be terminating.
for ((i = 0; i < 60; i++)); do
	images="$(kubectl get pods -l "app=$app" -o jsonpath='{range .items[*]}{.spec.containers[0].image}{"\n"}{end}' | sort -u)"
	[[ "$images" == "docker.io/library/busybox:1.37.0" ]] && break
	sleep 1
done
[[ "$images" == "docker.io/library/busybox:1.37.0" ]] || die "after the rollout the pods run: $images"
say "workloads: rolled to busybox:1.37.0"

kubectl scale "deployment/$app" --replicas=0 >/dev/null
for ((i = 0; i < 120; i++)); do
	[[ -z "$(kubectl get pods -l "app=$app" -o name)" ]] && break
	sleep 1
done
[[ -z "$(kubectl get pods -l "app=$app" -o name)" ]] || die "pods of $app left after scaling to 0: $(kubectl get pods -l app=$app)"
kubectl scale "deployment/$app" --replicas=3 >/dev/null
available
say "workloads: scaled to 0 and back to 3: OK"
