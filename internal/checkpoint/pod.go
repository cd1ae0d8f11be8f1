package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/atomicfile"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/state"
)

// A pod checkpoint (CRI CheckpointPod) is a directory the caller owns:
//
//	pod.options     JSON: format version, the containers by name (their
//	                archives) and their IDs at the checkpoint
//	pod.dump        the pod's PodSandboxConfig (protojson), for reference
//	<name>.tar      one container archive each, as CheckpointContainer
//	                writes it, named by the container's metadata name
//
// All the containers are dumped from one cut: every one is paused before
// the first is dumped, and all are resumed after the last (or on error).
const (
	PodOptionsFile = "pod.options"
	PodDumpFile    = "pod.dump"
)

// PodOptions is pod.options.
type PodOptions struct {
	// Version is FormatVersion of the noded that wrote it.
	Version int `json:"version"`
	// Containers maps each container's metadata name to its ID at the
	// checkpoint; its archive is <name>.tar.
	Containers map[string]string `json:"containers"`
	Runtime    string            `json:"runtime"`
	NodedVer   string            `json:"nodedVersion,omitempty"`
}

// PodRequest is one pod checkpoint: the pod's record, its selected
// containers (running, their locks held by the caller) and the directory.
type PodRequest struct {
	Pod        *state.Sandbox
	Containers []*state.Container
	// OutputPath is an existing empty directory; it is left, emptied,
	// when the checkpoint fails.
	OutputPath string
}

// resumeLimit bounds the resume of a pod's containers, which runs on a
// detached context: even after the caller's deadline nothing stays frozen.
const resumeLimit = 2 * time.Minute

// CheckOutputDir checks a pod checkpoint's directory: absolute, existing
// and empty.
func CheckOutputDir(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) {
		return errdefs.InvalidArgument("checkpoint output path %q is not an absolute path", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return errdefs.InvalidArgument("checkpoint output path %s: %v", dir, err)
	}
	if len(entries) > 0 {
		return errdefs.InvalidArgument("checkpoint output path %s is not empty", dir)
	}
	return nil
}

// CheckpointPod pauses every container of the request, dumps each into
// its archive in r.OutputPath, writes pod.options and pod.dump, and
// resumes them all, whether it succeeded, failed or ran out of time. On
// failure the directory is emptied again of what it wrote.
func (s *Service) CheckpointPod(ctx context.Context, r PodRequest) (retErr error) {
	if err := CheckOutputDir(r.OutputPath); err != nil {
		return err
	}
	lg := log.FromContext(ctx)
	names := map[string]string{}
	for _, c := range r.Containers {
		name := c.Config.GetMetadata().GetName()
		if _, dup := names[name]; dup || name == "" || !filepath.IsLocal(name) {
			return errdefs.InvalidArgument("container name %q cannot name an archive of this pod checkpoint", name)
		}
		names[name] = string(c.ID)
	}
	defer func() {
		if retErr == nil {
			return
		}
		entries, _ := os.ReadDir(r.OutputPath)
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(r.OutputPath, e.Name())); err != nil {
				lg.WithError(err).Warn("removing a partial pod checkpoint")
			}
		}
	}()

	// A kill of noded from here on leaves the marker: the next start
	// resumes the containers and empties the directory (Recover).
	mark, err := s.writeMarker("pod-"+string(r.Pod.ID), podMarker(r))
	if err != nil {
		return err
	}
	// Removed only once every container is resumed (defers run last
	// first): a failed resume is tried again at the next start.
	resumed := false
	defer func() {
		if resumed {
			removeMarker(mark, lg)
		}
	}()
	var paused []*state.Container
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), resumeLimit)
		defer cancel()
		resumed = true
		for _, c := range paused {
			if err := s.o.Monitor.Resume(rctx, c.SandboxID, c.ID); err != nil {
				lg.WithError(err).WithField("container", c.ID.Short()).Error("resuming a container after the pod checkpoint")
				retErr = errors.Join(retErr, fmt.Errorf("resuming container %s: %w", c.ID.Short(), err))
				resumed = false
			}
		}
	}()
	for _, c := range r.Containers {
		paused = append(paused, c)
		if err := s.o.Monitor.Pause(ctx, c.SandboxID, c.ID); err != nil {
			return fmt.Errorf("pausing container %s: %w", c.ID.Short(), err)
		}
	}
	for _, c := range r.Containers {
		loc := filepath.Join(r.OutputPath, c.Config.GetMetadata().GetName()+".tar")
		if err := s.Checkpoint(ctx, Request{Container: c, Location: loc}); err != nil {
			return err
		}
	}
	pod, err := protojson.Marshal(r.Pod.Config)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.OutputPath, PodDumpFile), pod, 0o600); err != nil {
		return err
	}
	return writeJSON(filepath.Join(r.OutputPath, PodOptionsFile), &PodOptions{
		Version: FormatVersion, Containers: names, Runtime: RuntimeName, NodedVer: s.o.Version,
	})
}

// marker is a checkpoint in progress, in <StateDir>/<name>.json: a pod's
// (its paused containers and its directory) or a container's (its work
// directory and partial archive).
type marker struct {
	Pod        ids.SandboxID     `json:"pod"`
	Containers []ids.ContainerID `json:"containers,omitempty"`
	OutputPath string            `json:"outputPath,omitempty"`
	Work       string            `json:"work,omitempty"`
	Partial    string            `json:"partial,omitempty"`
}

// writeMarker records a checkpoint before it changes anything; the
// caller removes the file (removeMarker) once it is over. No StateDir: no
// marker ("").
func (s *Service) writeMarker(name string, m *marker) (string, error) {
	if s.o.StateDir == "" {
		return "", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.o.StateDir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(s.o.StateDir, name+".json")
	return path, atomicfile.WriteFile(path, b, 0o600)
}

func removeMarker(path string, lg *logrus.Entry) {
	if path == "" {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lg.WithError(err).Warn("removing a checkpoint marker")
	}
}

// podMarker is the marker of a pod checkpoint.
func podMarker(r PodRequest) *marker {
	m := &marker{Pod: r.Pod.ID, OutputPath: r.OutputPath}
	for _, c := range r.Containers {
		m.Containers = append(m.Containers, c.ID)
	}
	return m
}

// Recover finishes the checkpoints a killed noded left in progress: a
// pod's containers are resumed (the pod must not stay frozen) and its
// directory emptied (the caller never got an answer, so the checkpoint
// failed); a container's work directory and partial archive are removed.
// Run at start-up, before requests are served.
func (s *Service) Recover(ctx context.Context) {
	if s.o.StateDir == "" {
		return
	}
	lg := log.FromContext(ctx)
	entries, _ := os.ReadDir(s.o.StateDir)
	for _, e := range entries {
		path := filepath.Join(s.o.StateDir, e.Name())
		var m marker
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil {
			lg.WithError(err).WithField("marker", path).Warn("unreadable pod checkpoint marker")
			_ = os.Remove(path)
			continue
		}
		failed := false
		for _, id := range m.Containers {
			err := s.o.Monitor.Resume(ctx, m.Pod, id)
			if err != nil && !errdefs.IsNotFound(err) && !errors.Is(err, errdefs.ErrFailedPrecondition) && !errors.Is(err, errdefs.ErrUnavailable) {
				lg.WithError(err).WithField("container", id.Short()).Error("resuming a container a killed pod checkpoint paused")
				failed = true
			}
		}
		for _, p := range []string{m.Work, m.Partial} {
			if p != "" && filepath.IsAbs(p) {
				_ = os.RemoveAll(p)
			}
		}
		if m.OutputPath != "" && filepath.IsAbs(m.OutputPath) {
			left, _ := os.ReadDir(m.OutputPath)
			for _, f := range left {
				_ = os.RemoveAll(filepath.Join(m.OutputPath, f.Name()))
			}
		}
		if !failed {
			_ = os.Remove(path)
		}
		lg.WithField("pod", m.Pod.Short()).Info("finished a checkpoint a killed noded left: containers resumed, partial output removed")
	}
}

// PodCheckpoint is an opened pod checkpoint whose archives were checked.
type PodCheckpoint struct {
	Dir     string
	Options PodOptions
	// Archives are the containers' archives by metadata name.
	Archives map[string]*Archive
}

// OpenPod reads a pod checkpoint directory and opens its archives:
// InvalidArgument for anything noded did not write or cannot read.
func OpenPod(dir string) (*PodCheckpoint, error) {
	if !filepath.IsAbs(dir) {
		return nil, errdefs.InvalidArgument("checkpoint path %q is not an absolute path", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, PodOptionsFile))
	if err != nil {
		return nil, errdefs.InvalidArgument("pod checkpoint %s: %v", dir, err)
	}
	p := &PodCheckpoint{Dir: dir, Archives: map[string]*Archive{}}
	if err := json.Unmarshal(b, &p.Options); err != nil {
		return nil, errdefs.InvalidArgument("pod checkpoint %s: %s: %v", dir, PodOptionsFile, err)
	}
	if p.Options.Runtime != RuntimeName || p.Options.Version != FormatVersion {
		return nil, errdefs.InvalidArgument("pod checkpoint %s was written by runtime %q format %d; noded restores its own, format %d", dir, p.Options.Runtime, p.Options.Version, FormatVersion)
	}
	if len(p.Options.Containers) == 0 {
		return nil, errdefs.InvalidArgument("pod checkpoint %s has no containers", dir)
	}
	for name := range p.Options.Containers {
		if !filepath.IsLocal(name) {
			return nil, errdefs.InvalidArgument("pod checkpoint %s: container name %q", dir, name)
		}
		a, err := Open(filepath.Join(dir, name+".tar"))
		if err != nil {
			return nil, err
		}
		p.Archives[name] = a
	}
	return p, nil
}

// Names are the pod checkpoint's container names, sorted.
func (p *PodCheckpoint) Names() []string {
	var names []string
	for n := range p.Archives {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Check refuses a restore-time container config whose image, command,
// arguments or working directory differ from the checkpointed
// container's (those describe the restored process, which the config
// cannot change). An unset field is no mismatch.
func (a *Archive) Check(cfg *runtimeapi.ContainerConfig) error {
	old := a.Container
	name := cfg.GetMetadata().GetName()
	if img := cfg.GetImage().GetImage(); img != "" && !slices.Contains([]string{
		a.Config.Noded.ImageID, a.Config.Noded.ImageRef, old.GetImage().GetImage(), old.GetImage().GetUserSpecifiedImage(),
	}, img) {
		return errdefs.InvalidArgument("container %s: image %q is not the checkpointed container's (%s)", name, img, a.Config.Noded.ImageRef)
	}
	if len(cfg.GetCommand()) > 0 && !slices.Equal(cfg.GetCommand(), old.GetCommand()) {
		return errdefs.InvalidArgument("container %s: command %q is not the checkpointed process's %q", name, cfg.GetCommand(), old.GetCommand())
	}
	if len(cfg.GetArgs()) > 0 && !slices.Equal(cfg.GetArgs(), old.GetArgs()) {
		return errdefs.InvalidArgument("container %s: args %q are not the checkpointed process's %q", name, cfg.GetArgs(), old.GetArgs())
	}
	if wd := cfg.GetWorkingDir(); wd != "" && wd != old.GetWorkingDir() {
		return errdefs.InvalidArgument("container %s: working directory %q is not the checkpointed process's %q", name, wd, old.GetWorkingDir())
	}
	return nil
}
