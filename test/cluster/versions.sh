# shellcheck shell=bash
# The versions the cluster test bed builds; sourced by the test/cluster scripts.
# kubernetes follows noded's k8s.io/cri-api minor (v0.37.x); its staging
# modules are pinned to the matching v0.37.x.
K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
