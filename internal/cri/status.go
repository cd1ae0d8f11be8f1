package cri

import (
	"context"
	"encoding/json"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Reason reported with NetworkReady=false, the value the kubelet and other
// runtimes use.
const reasonNetworkNotReady = "NetworkPluginNotReady"

// Status reports the RuntimeReady and NetworkReady conditions.
func (s *RuntimeServer) Status(_ context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if s.opts.Network != nil {
		if err := s.opts.Network.Status(); err != nil {
			network.Status = false
			network.Reason = reasonNetworkNotReady
			network.Message = "Network plugin returns error: " + err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			network,
		}},
		// The kubelet and critest gate features on these answers.
		Features: &runtimeapi.RuntimeFeatures{
			SupplementalGroupsPolicy: s.opts.Containers != nil,
			// Mount.mount_options: noexec, nodev, nosuid (specgen).
			MountOptions: s.opts.Containers != nil,
		},
	}
	for _, h := range s.opts.Handlers {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{
			Name: h,
			Features: &runtimeapi.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: s.opts.RecursiveReadOnlyMounts,
				// Pods with hostUsers: false (internal/specgen/userns.go).
				UserNamespaces: true,
			},
		})
	}
	if req.GetVerbose() {
		info, err := json.Marshal(map[string]any{
			"runtimeName":  RuntimeName,
			"version":      s.opts.Version,
			"cgroupDriver": s.opts.CgroupDriver,
		})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"config": string(info)}
	}
	return resp, nil
}
