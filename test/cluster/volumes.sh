#!/usr/bin/env bash
# Issue 12: the volume kinds the kubelet prepares and noded mounts, on the
# cluster of up.sh, each checked from inside the container:
#   - emptyDir on disk (shared by two containers) and in memory (a tmpfs);
#   - configMap and secret files (content, the secret's file mode);
#   - the projected service-account token (a JWT the API server accepts,
#     with the CA and namespace beside it) and a projected volume joining a
#     configMap, a secret and the downward API.
# Leaves nothing behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

pod=volumes
scenario_objects "pod/$pod" configmap/vol-cm secret/vol-secret

kubectl create configmap vol-cm --from-literal=greeting=hello-from-configmap >/dev/null
kubectl create secret generic vol-secret --from-literal=password=s3cr3t-value >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $pod, labels: { scenario: volumes } }
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - { name: disk, emptyDir: {} }
  - { name: mem, emptyDir: { medium: Memory, sizeLimit: 16Mi } }
  - { name: cm, configMap: { name: vol-cm } }
  - { name: secret, secret: { secretName: vol-secret, defaultMode: 0400 } }
  - name: all
    projected:
      sources:
      - configMap: { name: vol-cm }
      - secret: { name: vol-secret }
      - downwardAPI: { items: [{ path: labels, fieldRef: { fieldPath: metadata.labels } }] }
      - serviceAccountToken: { path: token, expirationSeconds: 3600, audience: noded-test }
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "echo from-main >/disk/note; exec sleep 3600"]
    volumeMounts:
    - { name: disk, mountPath: /disk }
    - { name: mem, mountPath: /mem }
    - { name: cm, mountPath: /cm }
    - { name: secret, mountPath: /secret }
    - { name: all, mountPath: /all }
  - name: peer
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts: [{ name: disk, mountPath: /shared }]
YAML
kubectl wait --for=condition=Ready "pod/$pod" --timeout=120s >/dev/null ||
	die "pod $pod is not Ready: $(kubectl describe pod "$pod" | tail -20)"
inpod() { kubectl exec "$pod" -c main -- "$@"; }

# emptyDir: the peer sees main's file; a file the peer writes is main's too.
[[ "$(kubectl exec "$pod" -c peer -- cat /shared/note)" == from-main ]] || die "emptyDir: the peer does not see main's file"
kubectl exec "$pod" -c peer -- sh -c 'echo from-peer >/shared/back'
[[ "$(inpod cat /disk/back)" == from-peer ]] || die "emptyDir: main does not see the peer's file"
fstype() { inpod awk -v m="$1" '$2 == m { print $3 }' /proc/mounts; }
[[ "$(fstype /mem)" == tmpfs ]] || die "emptyDir medium Memory: /mem is '$(fstype /mem)', not tmpfs"
[[ "$(fstype /disk)" != tmpfs ]] || die "emptyDir on disk is a tmpfs"
inpod sh -c 'echo in-memory >/mem/x && cat /mem/x' | grep -qx in-memory || die "emptyDir medium Memory is not writable"
say "volumes: emptyDir on disk shared by two containers, emptyDir in memory (tmpfs): OK"

[[ "$(inpod cat /cm/greeting)" == hello-from-configmap ]] || die "configMap: '$(inpod cat /cm/greeting 2>&1)'"
[[ "$(inpod cat /secret/password)" == s3cr3t-value ]] || die "secret: '$(inpod cat /secret/password 2>&1)'"
mode="$(inpod stat -L -c %a /secret/password)"
[[ "$mode" == 400 ]] || die "secret file mode $mode, wanted 400"
[[ "$(fstype /secret)" == tmpfs ]] || die "the secret volume is '$(fstype /secret)', not a tmpfs"
if inpod sh -c 'echo x >/cm/new' 2>/dev/null; then die "configMap volume is writable"; fi
say "volumes: configMap file, secret file (mode 400, on tmpfs), read-only: OK"

# The default service-account token, and the projected one with its audience.
sa=/var/run/secrets/kubernetes.io/serviceaccount
[[ "$(inpod cat "$sa/namespace")" == default ]] || die "service-account namespace: '$(inpod cat "$sa/namespace" 2>&1)'"
inpod grep -q 'BEGIN CERTIFICATE' "$sa/ca.crt" || die "service-account ca.crt missing"
token="$(inpod cat "$sa/token")"
[[ "$(tr -cd . <<<"$token")" == .. ]] || die "the service-account token is not a JWT"
# The API server authenticates the pod with it.
# A kubeconfig of its own: with the admin's, kubectl would present the admin's
# client certificate too.
who="$("$tools/kubectl" --kubeconfig /dev/null --server "https://$node_ip:$apiserver_port" \
	--certificate-authority "$C/pki/ca.crt" --token="$token" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)" ||
	die "the API server refused the pod's token: $who"
[[ "$who" == system:serviceaccount:default:default ]] || die "the pod's token is '$who'"
ptoken="$(inpod cat /all/token)"
payload="$(cut -d. -f2 <<<"$ptoken" | tr '_-' '/+')"
while ((${#payload} % 4)); do payload+="="; done
aud="$(base64 -d <<<"$payload" 2>/dev/null | jq -r '.aud | if type == "array" then .[0] else . end')"
[[ "$aud" == noded-test ]] || die "projected token audience '$aud'"
[[ "$(inpod cat /all/greeting)/$(inpod cat /all/password)" == hello-from-configmap/s3cr3t-value ]] ||
	die "projected configMap/secret: $(inpod ls -la /all/ 2>&1)"
inpod grep -q 'scenario="volumes"' /all/labels || die "projected downward API labels: '$(inpod cat /all/labels 2>&1)'"
say "volumes: service-account token (accepted by the API server as $who), projected token (aud $aud), configMap, secret and downward API: OK"
