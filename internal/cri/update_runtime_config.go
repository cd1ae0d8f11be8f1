package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/log"
)

// UpdateRuntimeConfig receives the node's pod CIDR from the kubelet. noded
// takes pod networking from the CNI configuration files, as CRI-O does, so
// the CIDR is only logged; there is nothing to apply.
func (s *RuntimeServer) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		log.FromContext(ctx).WithField("podCIDR", cidr).Info("kubelet reported the pod CIDR; CNI configuration decides pod addresses")
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
