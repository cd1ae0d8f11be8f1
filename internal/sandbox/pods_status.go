package sandbox

import (
	"cmp"
	"encoding/json"
	"iter"
	"slices"
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

// ListPodSandbox lists pods matching filter (nil matches all), oldest
// first: the StreamPodSandboxes items, collected.
func (s *Pods) ListPodSandbox(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	out := slices.Collect(s.StreamPodSandboxes(f))
	slices.SortFunc(out, func(a, b *runtimeapi.PodSandbox) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out
}

// StreamPodSandboxes yields the pods matching filter (nil matches all)
// one at a time, each record copied from the store only when it is
// reached, so that listing thousands of pods never holds all their copies
// at once. A pod removed meanwhile is left out, one added meanwhile may
// be; none is yielded twice. They come in ID order.
func (s *Pods) StreamPodSandboxes(f *runtimeapi.PodSandboxFilter) iter.Seq[*runtimeapi.PodSandbox] {
	return func(yield func(*runtimeapi.PodSandbox) bool) {
		all := s.o.Store.SandboxIDs()
		slices.Sort(all)
		for _, id := range all {
			rec, err := s.o.Store.Sandbox(id)
			if err != nil || !matchSandbox(rec, f) {
				continue // removed since the IDs were read, or filtered out
			}
			if !yield(&runtimeapi.PodSandbox{
				Id: string(rec.ID), Metadata: rec.Config.GetMetadata(), State: sandboxStateCRI(rec.State),
				CreatedAt: rec.CreatedAt, Labels: rec.Config.GetLabels(), Annotations: rec.Config.GetAnnotations(),
				RuntimeHandler: rec.RuntimeHandler,
			}) {
				return
			}
		}
	}
}

// matchSandbox applies the ID prefix, the state and the label selector;
// a nil filter matches everything.
func matchSandbox(rec *state.Sandbox, f *runtimeapi.PodSandboxFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(string(rec.ID), f.GetId()) {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != sandboxStateCRI(rec.State) {
		return false
	}
	return matchLabels(f.GetLabelSelector(), rec.Config.GetLabels())
}

func matchLabels(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
