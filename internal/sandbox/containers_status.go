package sandbox

import (
	"cmp"
	"encoding/json"
	"iter"
	"os"
	"slices"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/specgen"
	"github.com/noded-dev/noded/internal/state"
)

// maxTerminationMessage caps the message read from the termination file, as
// the kubelet caps it (4096 bytes).
const maxTerminationMessage = 4096

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
func (s *Containers) ContainerStatus(id ids.ContainerID, verbose bool) (*runtimeapi.ContainerStatus, map[string]string, error) {
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
		Mounts:      statusMounts(c),
		LogPath:     c.LogPath,
		User:        specgen.User(c.User).CRI(),
		Resources:   resourcesStatus(c),
		StopSignal:  specgen.ReportedStopSignal(c.Config.GetStopSignal(), c.StopSignal),
	}
	if c.State == state.ContainerExited && st.Message == "" {
		st.Message = readTermination(c.TerminationMessageFile)
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

// ListContainers lists containers matching filter (nil matches all),
// oldest first: the StreamContainers items, collected.
func (s *Containers) ListContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	out := slices.Collect(s.StreamContainers(f))
	slices.SortFunc(out, func(a, b *runtimeapi.Container) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.Id, b.Id))
	})
	return out
}

// StreamContainers yields the containers matching filter (nil matches
// all) one at a time, as StreamPodSandboxes yields pods (see there).
func (s *Containers) StreamContainers(f *runtimeapi.ContainerFilter) iter.Seq[*runtimeapi.Container] {
	return func(yield func(*runtimeapi.Container) bool) {
		for c := range eachContainer(s.o.Store, f) {
			if f.GetState() != nil && f.GetState().GetState() != containerStateCRI(c.State) {
				continue
			}
			if !yield(&runtimeapi.Container{
				Id: string(c.ID), PodSandboxId: string(c.SandboxID), Metadata: c.Config.GetMetadata(),
				Image:    &runtimeapi.ImageSpec{Image: c.ImageRef, Annotations: c.Config.GetImage().GetAnnotations()},
				ImageRef: c.ImageID, ImageId: c.ImageID, State: containerStateCRI(c.State), CreatedAt: c.CreatedAt,
				Labels: c.Config.GetLabels(), Annotations: c.Config.GetAnnotations(),
			}) {
				return
			}
		}
	}
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
