#!/usr/bin/env bash
# Starts a one-node Kubernetes cluster on this machine whose container
# runtime is a private noded: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy (iptables mode) and a kubelet, on loopback
# (the API server and kubelet on the node IP, the pod bridge's gateway:
# config.sh says why), all state under _build/cluster/ (config.sh). `make cluster-up` calls it;
# `make cluster-down` (down.sh) undoes it. The daemons keep running after
# this script returns; their PIDs are in _build/cluster/pids/, their logs in
# _build/cluster/logs/.
#
# Then: kubectl --kubeconfig _build/cluster/kubeconfig get nodes
#
# Images come from the offline test registry (bin/noded-testregistry),
# mirrored under their original names (docker.io/library/busybox:1.28, ...).
set -euo pipefail

# shellcheck source=config.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/config.sh"
# shellcheck source=noded-env.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/noded-env.sh"

start_timeout=120

# ---------------------------------------------------------------- checks
[[ $EUID -eq 0 ]] || die "must run as root: noded and the kubelet mount, create namespaces and cgroups"
for tool in openssl jq ip ss iptables findmnt; do
	command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found; run scripts/install-test-deps.sh"
done
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl; do
	[[ -x "$tools/$b" ]] || die "$tools/$b missing; run make cluster-tools"
done
[[ -x "$noded_bin" && -x "$registry_bin" ]] || die "$noded_bin / $registry_bin missing; run make build"
[[ -x "$crictl" ]] || die "$crictl missing; run scripts/install-test-deps.sh"
[[ -x "$busybox_bin" ]] || die "$busybox_bin missing; run test/images/build-busybox.sh"

for c in "${components[@]}"; do
	if pid_alive "$c"; then
		die "a cluster is already up ($c is pid $(cut -d' ' -f1 "$C/pids/$c")); make cluster-down first"
	fi
done
if [[ -d "$C" && -n "$(ls -A "$C" 2>/dev/null)" ]]; then
	die "$C is left over from an earlier run; make cluster-down first (it cleans up after a crash too)"
fi
# Fixed loopback ports: a control plane started twice (or anything else on
# them) fails here, clearly, rather than half-starting.
busy=()
for p in $etcd_port $etcd_peer_port $apiserver_port $kubelet_port $kubelet_healthz_port \
	$kcm_port $scheduler_port $proxy_healthz_port $proxy_metrics_port; do
	if ss -Htln "sport = :$p" | grep -q .; then
		busy+=("$p")
	fi
done
((${#busy[@]} == 0)) || die "TCP port(s) ${busy[*]} already in use (another cluster, or a kubelet, on this machine?): $(ss -Htlnp | grep -E ":($(
	IFS='|'
	echo "${busy[*]}"
)) " | tr -s ' ' | head -5)"
ip link show "$bridge" >/dev/null 2>&1 && die "bridge $bridge exists: another cluster, or make cluster-down not run"

mkdir -p "$C"/{pki,logs,pids,etcd,kubelet/seccomp,pod-logs,noded}
log_dir="$C/logs"

# A failure half-way leaves what was started to down.sh, which needs only
# the pid files: say so.
trap 'rc=$?; ((rc == 0)) || say "cluster-up failed; logs in $log_dir; make cluster-down stops what was started"' EXIT

# ------------------------------------------------------------ host state
# Saved before anything can change it; down.sh restores it.
for s in "${saved_sysctls[@]}"; do
	printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
done >"$C/sysctls.saved"
# The kubelet makes /var/log/containers (a fixed path) for its symlinks.
[[ -d /var/log/containers ]] || : >"$C/made-var-log-containers"
# Its device manager's socket is at a fixed path too,
# /var/lib/kubelet/device-plugins/kubelet.sock, whatever --root-dir says.
[[ -d /var/lib/kubelet ]] || : >"$C/made-var-lib-kubelet"

# noded's run dir holds unix sockets (108-byte limit): a short tmpfs-backed
# path, named in $C/run-dir so down.sh finds it.
run_dir="$(mktemp -d /run/ndcl.XXXXXX)"
printf '%s\n' "$run_dir" >"$C/run-dir"

# ------------------------------------------------------------ certificates
pki="$C/pki"
# cert NAME CN [O] [SANS] [USAGE]: an EC P-256 key and a certificate signed by
# the cluster CA.
cert() {
	local name=$1 cn=$2 o=${3:-} sans=${4:-} usage=${5:-clientAuth} subj="/CN=$2"
	[[ -z "$o" ]] || subj="/O=$o/CN=$cn"
	openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
	openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$usage"
		[[ -z "$sans" ]] || echo "subjectAltName=$sans"
	} >"$pki/$name.ext"
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 30 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
	rm -f "$pki/$name.csr" "$pki/$name.ext"
}
say "generating certificates in $pki"
openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=noded-cluster-ca" -days 30 -sha256 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
	-out "$pki/ca.crt" 2>/dev/null
cert apiserver kube-apiserver "" \
	"DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$node_ip,IP:$service_ip" \
	serverAuth
cert admin kubernetes-admin system:masters
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kube-proxy system:kube-proxy
cert kubelet "system:node:$node_name" system:nodes
cert kubelet-serving "system:node:$node_name" system:nodes "DNS:$node_name,DNS:localhost,IP:127.0.0.1,IP:$node_ip" serverAuth
# Service-account token signing key pair.
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
chmod 600 "$pki"/*.key

# kubeconfig FILE CERTNAME
kubeconfig() {
	cat >"$1" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: noded
  cluster:
    certificate-authority: $pki/ca.crt
    server: https://$node_ip:$apiserver_port
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: noded
  context: { cluster: noded, user: $2 }
current-context: noded
YAML
}
kubeconfig "$C/kubeconfig" admin
for n in controller-manager scheduler kube-proxy kubelet; do
	kubeconfig "$C/$n.kubeconfig" "$n"
done

# start NAME BIN ARGS...: a daemon in its own session (it outlives this
# script), logging to logs/NAME.log, its PID in pids/NAME.
start() {
	local name=$1
	shift
	setsid "$@" >>"$log_dir/$name.log" 2>&1 </dev/null &
	record_pid "$name" $!
	say "started $name (pid $!)"
}

# wait_for NAME WHAT CMD...: polls CMD until it succeeds, failing early
# (with NAME's log) if NAME exits.
wait_for() {
	local name=$1 what=$2 i
	shift 2
	for ((i = 0; i < start_timeout * 2; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		if ! pid_alive "$name"; then
			tail -n 40 "$log_dir/$name.log" >&2
			die "$name exited before $what (log above: $log_dir/$name.log)"
		fi
		sleep 0.5
	done
	tail -n 40 "$log_dir/$name.log" >&2
	die "$name: no $what within ${start_timeout}s (log above)"
}

# ------------------------------------------------- registry, CNI and noded
nd="$C/noded"
nt_noded_files "$nd"
# shellcheck disable=SC2034 # read by the nt_start_* functions
NT_LAUNCH=(setsid)
nt_start_registry "$registry_bin" "$busybox_bin" "$nd"
record_pid registry "$NT_REGISTRY_PID"
# The bridge with the node IP (the gateway the bridge plugin would give it).
ip link add "$bridge" type bridge
ip addr add "$node_ip/${pod_cidr#*/}" dev "$bridge"
ip link set "$bridge" up
nt_cni_conflist "$nd/cni/10-noded-cluster.conflist" noded-cluster "$bridge" "$pod_cidr" "$nd/cni-ipam"
sock="$run_dir/noded.sock"
ln -sfn "$sock" "$C/noded.sock"
cluster_start_noded
mv "$nd/registry.log" "$log_dir/registry.log" 2>/dev/null && ln -sfn "$log_dir/registry.log" "$nd/registry.log"
ln -sfn "$nd/noded.log" "$log_dir/noded.log"

# ------------------------------------------------------------ etcd
start etcd "$tools/etcd" --name noded-cluster --data-dir "$C/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
	--listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
	--initial-cluster "noded-cluster=http://127.0.0.1:$etcd_peer_port" --listen-metrics-urls "" \
	--log-level warn
# No curl on a bare Debian: bash's /dev/tcp speaks enough HTTP.
etcd_health() (
	exec 3<>"/dev/tcp/127.0.0.1/$etcd_port"
	printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	grep -q '"health":"true"' <&3
)
wait_for etcd "health" etcd_health

# ------------------------------------------------------------ kube-apiserver
start kube-apiserver "$tools/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$etcd_port" \
	--bind-address "$node_ip" --advertise-address "$node_ip" --secure-port "$apiserver_port" \
	--cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
	--client-ca-file "$pki/ca.crt" \
	--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
	--service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-cluster-ip-range "$service_cidr" \
	--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
	--kubelet-preferred-address-types InternalIP \
	--allow-privileged=true --profiling=false
wait_for kube-apiserver "/readyz" kubectl --request-timeout 5s get --raw /readyz

# ------------------------------------------- controller manager, scheduler
start kube-controller-manager "$tools/kube-controller-manager" \
	--kubeconfig "$C/controller-manager.kubeconfig" \
	--authentication-kubeconfig "$C/controller-manager.kubeconfig" --authorization-kubeconfig "$C/controller-manager.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$kcm_port" --cert-dir "$pki/kcm" --leader-elect=false \
	--service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
	--cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
	--use-service-account-credentials=true --service-cluster-ip-range "$service_cidr" \
	--allocate-node-cidrs=false --profiling=false
start kube-scheduler "$tools/kube-scheduler" \
	--kubeconfig "$C/scheduler.kubeconfig" \
	--authentication-kubeconfig "$C/scheduler.kubeconfig" --authorization-kubeconfig "$C/scheduler.kubeconfig" \
	--bind-address 127.0.0.1 --secure-port "$scheduler_port" --cert-dir "$pki/scheduler" --leader-elect=false \
	--profiling=false

# ------------------------------------------------------------ kube-proxy
cat >"$C/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $C/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $node_name
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$proxy_healthz_port
metricsBindAddress: 127.0.0.1:$proxy_metrics_port
clusterCIDR: $pod_cidr
# Leave the host's conntrack sysctls and route_localnet alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
# Lowering oom_score_adj needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
YAML
start kube-proxy "$tools/kube-proxy" --config "$C/kube-proxy.yaml"

# ------------------------------------------------------------ kubelet
# cgroup v1 (hybrid) with the cgroupfs driver: the kubepods tree goes under
# a private cgroup root, which must exist in every hierarchy.
for h in /sys/fs/cgroup/*/; do
	[[ -f "$h/cgroup.procs" ]] || continue
	mkdir -p "$h$cgroup_root"
done
mkdir -p "$C/kubelet/seccomp"
cat >"$C/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $pki/ca.crt }
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup_root
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
# The host is cgroup v1 (hybrid); the kubelet refuses it unless told.
failCgroupV1: false
failSwapOn: false
# Root lacks CAP_SYS_RESOURCE: keep the kubelet's own oom_score_adj.
oomScoreAdj: 0
podLogsDir: $C/pod-logs
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
registerNode: true
# One small node: do not evict for the build machine's disk use.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
YAML
# NODED_CLUSTER_KUBELET_GATES: kubelet feature gates, "A=true,B=false".
if [[ -n "${NODED_CLUSTER_KUBELET_GATES:-}" ]]; then
	echo "featureGates:" >>"$C/kubelet.yaml"
	IFS=, read -ra gates <<<"$NODED_CLUSTER_KUBELET_GATES"
	for g in "${gates[@]}"; do
		echo "  ${g%%=*}: ${g#*=}" >>"$C/kubelet.yaml"
	done
fi
start kubelet "$tools/kubelet" --config "$C/kubelet.yaml" --kubeconfig "$C/kubelet.kubeconfig" \
	--root-dir "$C/kubelet" --hostname-override "$node_name" --node-ip "$node_ip" --v 2

node_ready() {
	[[ "$(kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
wait_for kubelet "Ready node $node_name" node_ready
for c in kube-controller-manager kube-scheduler kube-proxy; do
	pid_alive "$c" || {
		tail -n 30 "$log_dir/$c.log" >&2
		die "$c exited (log above)"
	}
done
# Pods need the default service account, which the controller manager makes.
wait_for kube-controller-manager "default service account" kubectl get serviceaccount default -n default

say "cluster up: node $node_name Ready; kubectl --kubeconfig $C/kubeconfig get nodes"
kubectl get nodes -o wide >&2
