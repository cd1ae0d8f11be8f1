#!/usr/bin/env bash
# Issue 12: what kubectl sends through the API server and the kubelet to
# noded's streaming server, on the cluster of up.sh. Each step asserts the
# outcome:
#   - kubectl exec: stdout, stderr and the exit code apart; stdin piped (-i);
#     a terminal (-it, through a pseudo-terminal from script(1));
#   - kubectl attach: output; stdin (-i); a terminal (-it);
#   - kubectl logs -f follows new lines; logs --previous after a restart;
#   - kubectl cp both ways, byte for byte;
#   - kubectl port-forward to a pod's port;
#   - kubectl debug: an ephemeral container in the target's PID namespace.
# Leaves nothing behind.
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"

pod=streams
prev=streams-previous
work="$(mktemp -d)"
pf_pid=
scenario_cleanup() {
	[[ -z "$pf_pid" ]] || { kill "$pf_pid" 2>/dev/null; wait "$pf_pid" 2>/dev/null; } || true
	rm -rf "$work"
}
scenario_objects "pod/$pod" "pod/$prev"

kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: { name: $pod }
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    command: ["sh", "-c", "mkdir -p /www && echo pf-ok >/www/index.html && httpd -p 8080 -h /www && i=0; while true; do echo tick-\$i; i=\$((i+1)); sleep 1; done"]
  - name: echo
    image: docker.io/library/busybox:1.28
    stdin: true
    command: ["sh", "-c", "while read -r l; do echo \"got:\$l\"; done"]
  - name: tty
    image: docker.io/library/busybox:1.28
    stdin: true
    tty: true
    command: ["sh"]
---
apiVersion: v1
kind: Pod
metadata: { name: $prev }
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{ name: state, emptyDir: {} }]
  containers:
  - name: main
    image: docker.io/library/busybox:1.28
    volumeMounts: [{ name: state, mountPath: /state }]
    # The first run exits 1; the kubelet restarts it; the second stays.
    command: ["sh", "-c", "n=\$((\$(cat /state/n 2>/dev/null || echo 0) + 1)); echo \$n >/state/n; echo run-\$n; [ \$n -gt 1 ] || exit 1; exec sleep 3600"]
YAML
kubectl wait --for=condition=Ready "pod/$pod" --timeout=120s >/dev/null ||
	die "pod $pod is not Ready: $(kubectl describe pod "$pod" | tail -20)"

# expect WHAT GOT WANT: fails the scenario unless GOT contains WANT.
expect() {
	grep -qF -- "$3" <<<"$2" || die "$1: wanted '$3' in: $2"
}
# tty CMD...: runs CMD on a pseudo-terminal (kubectl -t needs one), with
# this script's stdin fed to it; prints what the terminal showed.
on_tty() {
	timeout 60 script -qec "$(printf '%q ' "$@")" /dev/null
}
kx=("$tools/kubectl" --kubeconfig "$C/kubeconfig")

# ---------------------------------------------------------------- exec
set +e
out="$(kubectl exec "$pod" -c main -- sh -c 'echo to-stdout; echo to-stderr >&2; exit 7' 2>"$work/err")"
rc=$?
set -e
((rc == 7)) || die "exec: exit code $rc, wanted 7 (stderr: $(cat "$work/err"))"
[[ "$out" == to-stdout ]] || die "exec: stdout '$out'"
expect "exec: stderr" "$(cat "$work/err")" to-stderr
out="$(printf 'line one\nline two\n' | kubectl exec -i "$pod" -c main -- sh -c 'cat; echo eof-seen')"
[[ "$out" == $'line one\nline two\neof-seen' ]] || die "exec -i: '$out'"
set +e
out="$(printf 'tty; stty size; exit 5\n' | on_tty "${kx[@]}" exec -it "$pod" -c main -- sh)"
rc=$?
set -e
((rc == 5)) || die "exec -it: exit code $rc, wanted 5; terminal: $out"
expect "exec -it: tty" "$out" /dev/pts/
say "streaming: exec (exit code 7, stdout/stderr apart), exec -i (stdin, EOF), exec -it (a pts, exit 5): OK"

# ---------------------------------------------------------------- attach
out="$(timeout 4 "${kx[@]}" attach "$pod" -c main 2>/dev/null || true)"
expect "attach" "$out" tick-
out="$({
	echo hello-attach
	sleep 3
} | timeout 15 "${kx[@]}" attach -i "$pod" -c echo 2>/dev/null || true)"
expect "attach -i" "$out" got:hello-attach
out="$({
	sleep 2
	echo 'echo tty-attach-$((6*7))'
	sleep 2
} | on_tty "${kx[@]}" attach -it "$pod" -c tty || true)"
expect "attach -it" "$out" tty-attach-42
say "streaming: attach (output), attach -i (stdin), attach -it (terminal): OK"

# ---------------------------------------------------------------- logs
out="$(timeout 5 "${kx[@]}" logs -f --tail=1 "$pod" -c main 2>/dev/null || true)"
n="$(grep -c '^tick-' <<<"$out" || true)"
((n >= 3)) || die "logs -f: $n lines in 5 s, wanted at least 3 (followed): $out"
first="$(head -1 <<<"$out")" last="$(grep '^tick-' <<<"$out" | tail -1)"
((${last#tick-} > ${first#tick-})) || die "logs -f: not following: $out"
for ((i = 0; i < 90; i++)); do
	[[ "$(kubectl get pod "$prev" -o jsonpath='{.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].ready}')" == 1/true ]] && break
	sleep 1
done
[[ "$(kubectl get pod "$prev" -o jsonpath='{.status.containerStatuses[0].restartCount}')" == 1 ]] ||
	die "pod $prev: $(kubectl get pod "$prev" -o jsonpath='{.status.containerStatuses[0]}')"
[[ "$(kubectl logs --previous "$prev")" == run-1 ]] || die "logs --previous: '$(kubectl logs --previous "$prev" 2>&1)'"
[[ "$(kubectl logs "$prev")" == run-2 ]] || die "logs after the restart: '$(kubectl logs "$prev" 2>&1)'"
say "streaming: logs -f ($first .. $last), logs --previous (run-1, now run-2, restartCount 1): OK"

# ---------------------------------------------------------------- cp
head -c 1048576 /dev/urandom >"$work/in"
kubectl cp "$work/in" "$pod:/tmp/in" -c main >/dev/null
sum="$(kubectl exec "$pod" -c main -- md5sum /tmp/in | cut -d' ' -f1)"
[[ "$sum" == "$(md5sum <"$work/in" | cut -d' ' -f1)" ]] || die "cp to the pod: md5 $sum differs"
kubectl cp "$pod:/tmp/in" "$work/back" -c main >/dev/null 2>&1
cmp -s "$work/in" "$work/back" || die "cp from the pod: the file differs"
say "streaming: cp to and from the pod (1 MiB, same bytes): OK"

# ---------------------------------------------------------------- port-forward
"${kx[@]}" port-forward "pod/$pod" 18080:8080 >"$work/pf.log" 2>&1 &
pf_pid=$!
for ((i = 0; i < 100; i++)); do
	grep -q 'Forwarding from' "$work/pf.log" && break
	kill -0 "$pf_pid" 2>/dev/null || die "port-forward exited: $(cat "$work/pf.log")"
	sleep 0.1
done
for ((i = 0; i < 3; i++)); do
	out="$(curl -sS --max-time 5 http://127.0.0.1:18080/index.html 2>&1 || true)"
	[[ "$out" == pf-ok ]] || die "port-forward: request $i answered '$out' ($(cat "$work/pf.log"))"
done
kill "$pf_pid"
wait "$pf_pid" 2>/dev/null || true
pf_pid=
say "streaming: port-forward 18080 -> pod:8080, 3 requests: OK"

# ---------------------------------------------------------------- debug
kubectl debug "$pod" -c dbg --image=docker.io/library/busybox:1.28 --target=main -- \
	sh -c 'ps -o pid,args; exec sleep 600' >/dev/null 2>&1
for ((i = 0; i < 60; i++)); do
	[[ -n "$(kubectl get pod "$pod" -o jsonpath='{.status.ephemeralContainerStatuses[0].state.running}')" ]] && break
	sleep 1
done
[[ -n "$(kubectl get pod "$pod" -o jsonpath='{.status.ephemeralContainerStatuses[0].state.running}')" ]] ||
	die "debug: the ephemeral container is not running: $(kubectl get pod "$pod" -o jsonpath='{.status.ephemeralContainerStatuses}')"
# Its ps sees the target's processes: they share a PID namespace.
out="$(kubectl logs "$pod" -c dbg)"
expect "debug: ps in the target's PID namespace" "$out" "httpd -p 8080"
[[ "$(kubectl exec "$pod" -c dbg -- cat /proc/1/cmdline | tr '\0' ' ')" == "sh -c mkdir"* ]] ||
	die "debug: PID 1 seen from the ephemeral container is not main's"
say "streaming: debug (ephemeral container, target's PID namespace, exec into it): OK"
