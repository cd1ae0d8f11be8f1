package sandbox

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/state"
)

// maxTerminationMessage caps the message read from the termination file, as
// the kubelet caps it (4096 bytes).
const maxTerminationMessage = 4096

// PodSandboxStatus reports a pod; verbose adds noded's record as JSON.
func (s *Service) PodSandboxStatus(ref string, verbose bool) (*runtimeapi.PodSandboxStatus, map[string]string, error) {
	id, err := s.resolveSandbox(ref)
	if err != nil {
		return nil, nil, err
	}
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
func (s *Service) ListPodSandbox(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
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

func containerStateCRI(s state.ContainerState) runtimeapi.ContainerState {
	switch s {
	case state.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case state.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case state.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// ContainerStatus reports a container; verbose adds noded's record.
func (s *Service) ContainerStatus(ref string, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
	id, err := s.resolveContainer(ref)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.o.Store.Container(id)
	if err != nil {
		return nil, nil, err
	}
	st := &runtimeapi.ContainerStatus{
		Id:          string(c.ID),
		Metadata:    c.Config.GetMetadata(),
		State:       containerStateCRI(c.State),
		CreatedAt:   c.CreatedAt,
		StartedAt:   c.StartedAt,
		FinishedAt:  c.FinishedAt,
		ExitCode:    c.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: c.ImageRef, Annotations: c.Config.GetImage().GetAnnotations()},
		ImageRef:    c.ImageID,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      c.Config.GetMounts(),
		LogPath:     c.LogPath,
		User:        parseUser(c.Extra[extraUser]),
	}
	if c.State == state.ContainerExited && st.Message == "" {
		st.Message = readTermination(c.Extra[extraTermination])
	}
	if !verbose {
		return st, nil, nil
	}
	info, err := json.Marshal(map[string]any{
		"pid": c.Pid, "sandboxID": c.SandboxID, "bundle": c.Bundle, "storageID": c.StorageID, "config": c.Config,
	})
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": string(info)}, nil
}

func readTermination(path string) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, maxTerminationMessage)
	n, _ := f.Read(buf)
	return string(buf[:n])
}

func parseUser(s string) *runtimeapi.ContainerUser {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return nil
	}
	uid, _ := strconv.ParseInt(parts[0], 10, 64)
	gid, _ := strconv.ParseInt(parts[1], 10, 64)
	u := &runtimeapi.LinuxContainerUser{Uid: uid, Gid: gid}
	for _, g := range strings.Split(parts[2], ",") {
		if n, err := strconv.ParseInt(g, 10, 64); err == nil {
			u.SupplementalGroups = append(u.SupplementalGroups, n)
		}
	}
	return &runtimeapi.ContainerUser{Linux: u}
}

// ListContainers lists containers matching filter (nil matches all).
func (s *Service) ListContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range s.o.Store.Containers() {
		if !matchContainer(c, f) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != containerStateCRI(c.State) {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id: string(c.ID), PodSandboxId: string(c.SandboxID), Metadata: c.Config.GetMetadata(),
			Image:    &runtimeapi.ImageSpec{Image: c.ImageRef, Annotations: c.Config.GetImage().GetAnnotations()},
			ImageRef: c.ImageID, ImageId: c.ImageID, State: containerStateCRI(c.State), CreatedAt: c.CreatedAt,
			Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
		})
	}
	return out
}

// containerFilter is what the container list and stats filters share.
type containerFilter interface {
	GetId() string
	GetPodSandboxId() string
	GetLabelSelector() map[string]string
}

// matchContainer applies the id and pod prefixes and the label selector; a
// nil filter matches everything.
func matchContainer(c *state.Container, f containerFilter) bool {
	if f == nil {
		return true
	}
	return strings.HasPrefix(string(c.ID), f.GetId()) &&
		strings.HasPrefix(string(c.SandboxID), f.GetPodSandboxId()) &&
		matchLabels(f.GetLabelSelector(), c.Config.GetLabels())
}
