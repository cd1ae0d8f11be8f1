package sandbox

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/checkpoint"
	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// noOptions refuses checkpoint and restore options: noded has none, and
// the CRI wants unknown keys rejected rather than ignored.
func noOptions(options map[string]string) error {
	for k := range options {
		return errdefs.InvalidArgument("unknown option %q: noded takes no checkpoint or restore options", k)
	}
	return nil
}

// CheckpointPod writes a consistent checkpoint of the pod's selected
// containers into outputPath (CRI CheckpointPod; checkpoint.CheckpointPod
// says how): they must all be running containers of this ready pod.
func (s *Pods) CheckpointPod(ctx context.Context, id ids.SandboxID, outputPath string, ctrIDs []ids.ContainerID, options map[string]string) error {
	if s.o.Checkpoints == nil {
		return errdefs.NotImplemented("checkpoints are not enabled")
	}
	if err := noOptions(options); err != nil {
		return err
	}
	if len(ctrIDs) == 0 {
		return errdefs.InvalidArgument("a pod checkpoint needs at least one container")
	}
	if err := checkpoint.CheckOutputDir(outputPath); err != nil {
		return err
	}
	unlockPod, err := s.lockPod(ctx, id)
	if err != nil {
		return err
	}
	defer unlockPod()
	pod, err := s.o.Store.Sandbox(id)
	if err != nil {
		return err
	}
	if pod.State != state.SandboxReady {
		return errdefs.FailedPrecondition("pod sandbox %s is not ready", id.Short())
	}
	seen := map[ids.ContainerID]bool{}
	var ctrs []*state.Container
	for _, cid := range ctrIDs {
		if seen[cid] {
			return errdefs.InvalidArgument("container %s is named twice", cid.Short())
		}
		seen[cid] = true
		unlock, err := s.lockContainer(ctx, cid)
		if err != nil {
			return err
		}
		defer unlock()
		c, err := s.o.Store.Container(cid)
		if err != nil {
			return err
		}
		if c.SandboxID != id {
			return errdefs.InvalidArgument("container %s is not in pod sandbox %s", cid.Short(), id.Short())
		}
		if c.State != state.ContainerRunning {
			return errdefs.FailedPrecondition("container %s is %s, not running", cid.Short(), c.State)
		}
		ctrs = append(ctrs, c)
	}
	ctx = log.WithContext(ctx, log.FromContext(ctx).WithField("pod", id.Short()))
	return s.o.Checkpoints.CheckpointPod(ctx, checkpoint.PodRequest{Pod: pod, Containers: ctrs, OutputPath: outputPath})
}

// RestorePod makes a new pod sandbox from cfg and creates in it, from a
// pod checkpoint, one container per config (matched by metadata name; the
// names must be exactly the checkpoint's), each CREATED: its start
// restores it (CRI RestorePod); their IDs come in the order of ctrCfgs. The configs' image, command, arguments
// and working directory must be the checkpointed ones where set. On any
// failure the pod and its containers are removed again.
func (s *Pods) RestorePod(ctx context.Context, path string, cfg *runtimeapi.PodSandboxConfig, handler string, options map[string]string, ctrCfgs []*runtimeapi.ContainerConfig) (_ ids.SandboxID, _ []ids.ContainerID, retErr error) {
	if s.o.Checkpoints == nil {
		return "", nil, errdefs.NotImplemented("checkpoints are not enabled")
	}
	if err := noOptions(options); err != nil {
		return "", nil, err
	}
	if !slices.Contains(Handlers, handler) {
		return "", nil, errdefs.InvalidArgument("unknown runtime handler %q", handler)
	}
	pc, err := checkpoint.OpenPod(path)
	if err != nil {
		return "", nil, err
	}
	if err := matchNames(pc.Names(), ctrCfgs); err != nil {
		return "", nil, err
	}
	for _, c := range ctrCfgs {
		if err := pc.Archives[c.GetMetadata().GetName()].Check(c); err != nil {
			return "", nil, err
		}
	}
	lg := log.FromContext(ctx)
	var undo cleanup.Stack
	defer func() { undo.RunIf(ctx, &retErr, lg) }()
	podID, err := s.RunPodSandbox(ctx, cfg, handler)
	if err != nil {
		return "", nil, err
	}
	undo.Push("remove restored pod", func(ctx context.Context) error {
		if err := s.StopPodSandbox(ctx, podID); err != nil {
			return err
		}
		return s.RemovePodSandbox(ctx, podID)
	})
	var restored []ids.ContainerID
	for _, c := range ctrCfgs {
		name := c.GetMetadata().GetName()
		fromArchive := proto.Clone(c).(*runtimeapi.ContainerConfig)
		fromArchive.Image = &runtimeapi.ImageSpec{Image: pc.Archives[name].Path}
		cid, err := s.containers.CreateContainer(ctx, podID, fromArchive)
		if err != nil {
			return "", nil, fmt.Errorf("restoring container %s: %w", name, err)
		}
		restored = append(restored, cid)
	}
	undo.Release()
	lg.WithField("pod", podID.Short()).WithField("containers", len(restored)).Info("pod restored from its checkpoint")
	return podID, restored, nil
}

// matchNames checks that the configs' metadata names are unique, not
// empty, and exactly want.
func matchNames(want []string, cfgs []*runtimeapi.ContainerConfig) error {
	if len(cfgs) == 0 {
		return errdefs.InvalidArgument("a restore needs the configs of the checkpoint's containers")
	}
	var got []string
	for _, c := range cfgs {
		n := c.GetMetadata().GetName()
		if n == "" {
			return errdefs.InvalidArgument("a container config has no metadata name")
		}
		if slices.Contains(got, n) {
			return errdefs.InvalidArgument("container config %q is given twice", n)
		}
		got = append(got, n)
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		return errdefs.InvalidArgument("container configs %q are not the checkpoint's containers %q", got, want)
	}
	return nil
}
