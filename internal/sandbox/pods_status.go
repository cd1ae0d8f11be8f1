package sandbox

import (
	"encoding/json"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/state"
)

// PodSandboxStatus reports a pod; verbose adds noded's record as JSON.
func (s *Pods) PodSandboxStatus(id ids.SandboxID, verbose bool) (*runtimeapi.PodSandboxStatus, map[string]string, error) {
	rec, err := s.o.Store.Sandbox(id)
	if err != nil {
		return nil, nil, err
	}
	st := &runtimeapi.PodSandboxStatus{
		Id:             string(rec.ID),
		Metadata:       rec.Config.GetMetadata(),
		State:          sandboxStateCRI(rec.State),
		CreatedAt:      rec.CreatedAt,
		Labels:         rec.Config.GetLabels(),
		Annotations:    rec.Config.GetAnnotations(),
		RuntimeHandler: rec.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: namespaceOptions(rec.Config),
		}},
	}
	if len(rec.IPs) > 0 && rec.State == state.SandboxReady {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: rec.IPs[0]}
		for _, ip := range rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	if !verbose {
		return st, nil, nil
	}
	info, err := json.Marshal(map[string]any{
		"pid": rec.PausePID, "netnsPath": rec.NetNSPath, "cgroupParent": rec.CgroupParent,
		"dir": rec.Dir, "runtimeHandler": rec.RuntimeHandler, "config": rec.Config,
	})
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": string(info)}, nil
}

func namespaceOptions(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	if o := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(); o != nil {
		return o
	}
	return &runtimeapi.NamespaceOption{}
}

func sandboxStateCRI(s state.SandboxState) runtimeapi.PodSandboxState {
	if s == state.SandboxReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// ListPodSandbox lists pods matching filter (nil matches all).
func (s *Pods) ListPodSandbox(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	for _, rec := range s.o.Store.Sandboxes() {
		if f != nil {
			if f.GetId() != "" && !strings.HasPrefix(string(rec.ID), f.GetId()) {
				continue
			}
			if f.GetState() != nil && f.GetState().GetState() != sandboxStateCRI(rec.State) {
				continue
			}
			if !matchLabels(f.GetLabelSelector(), rec.Config.GetLabels()) {
				continue
			}
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id: string(rec.ID), Metadata: rec.Config.GetMetadata(), State: sandboxStateCRI(rec.State),
			CreatedAt: rec.CreatedAt, Labels: rec.Config.GetLabels(), Annotations: rec.Config.GetAnnotations(),
			RuntimeHandler: rec.RuntimeHandler,
		})
	}
	return out
}

func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
