package checkpoint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.podman.io/storage/pkg/archive"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/cleanup"
	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
	"github.com/noded-dev/noded/internal/storage"
)

// dumper is the pod's monitor, which dumps a container with CRIU, and
// pauses and resumes containers for a pod's consistent cut (oci.Runtime).
type dumper interface {
	Checkpoint(ctx context.Context, pod oci.PodID, id oci.ContainerID, o oci.CheckpointOptions) error
	Pause(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
	Resume(ctx context.Context, pod oci.PodID, id oci.ContainerID) error
}

// layers lists a writable layer's changes (storage.ContainerStore).
type layers interface {
	Changes(id storage.ContainerID) ([]archive.Change, error)
}

// Options wire a Service.
type Options struct {
	Monitor dumper
	Layers  layers
	// Version is noded's, written into config.dump.
	Version string
	// StateDir keeps the markers of pod checkpoints in progress (pod.go),
	// so that a noded killed while a pod is paused resumes it at its
	// next start (Recover); it must survive restarts. Empty: no markers.
	StateDir string
}

// Service writes checkpoint archives of running containers.
type Service struct{ o Options }

// New returns a Service.
func New(o Options) *Service { return &Service{o: o} }

// Request is one checkpoint: the container's record (running, its lock
// held by the caller) and where the archive goes.
type Request struct {
	Container *state.Container
	// Location is the archive's path: absolute, in an existing
	// directory, not an existing directory itself. ".tar.gz"/".tgz" and
	// ".tar.zst" get the compression they name; anything else is plain
	// tar, as CRI-O writes for the kubelet.
	Location string
	// Exit ends the container once dumped (the CRI's default is to leave
	// it running).
	Exit bool
}

// CheckLocation checks an archive path before anything is dumped.
func CheckLocation(location string) error {
	if location == "" {
		return errdefs.InvalidArgument("checkpoint location must not be empty")
	}
	if !filepath.IsAbs(location) {
		return errdefs.InvalidArgument("checkpoint location %q is not an absolute path", location)
	}
	if fi, err := os.Stat(location); err == nil && fi.IsDir() {
		return errdefs.InvalidArgument("checkpoint location %s is a directory", location)
	}
	if fi, err := os.Stat(filepath.Dir(location)); err != nil || !fi.IsDir() {
		return errdefs.InvalidArgument("checkpoint location %s: its directory does not exist", location)
	}
	return nil
}

// Checkpoint dumps the container and writes its archive at r.Location,
// replacing a file there only once the new archive is complete. Its work
// files live in a directory of the container's bundle, removed at the
// end; on any failure nothing is left at the location (a previous file
// there is untouched). A marker names both while it runs, so that the
// next start removes what a kill of noded left (Recover).
func (s *Service) Checkpoint(ctx context.Context, r Request) (retErr error) {
	if err := CheckLocation(r.Location); err != nil {
		return err
	}
	c := r.Container
	lg := log.FromContext(ctx)
	var undo cleanup.Stack
	defer func() { undo.RunIf(ctx, &retErr, lg) }()

	// Fixed names (the caller holds the container's lock): the marker
	// can name them before they exist.
	work := filepath.Join(c.Bundle, "checkpoint-work")
	partial := filepath.Join(filepath.Dir(r.Location), "."+filepath.Base(r.Location)+".noded-partial")
	mark, err := s.writeMarker("container-"+string(c.ID), &marker{Pod: c.SandboxID, Work: work, Partial: partial})
	if err != nil {
		return err
	}
	defer removeMarker(mark, lg)
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	images := filepath.Join(work, ImagesDir)
	criuWork := filepath.Join(work, ".criu-work")
	t0 := time.Now()
	err = s.o.Monitor.Checkpoint(ctx, c.SandboxID, c.ID, oci.CheckpointOptions{Dir: images, WorkDir: criuWork, Exit: r.Exit})
	if err != nil {
		return fmt.Errorf("dumping container %s: %w", c.ID.Short(), err)
	}
	dumped := time.Now()
	lg.WithField("took", dumped.Sub(t0).Round(time.Millisecond)).Info("container dumped")
	if err := copyFile(filepath.Join(criuWork, "dump.log"), filepath.Join(work, DumpLogFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	spec, err := os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("reading the container's spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(work, SpecDumpFile), spec, 0o600); err != nil {
		return err
	}
	if err := s.writeRootfsDiff(c, spec, work); err != nil {
		return err
	}
	if fi, err := os.Stat(c.LogPath); err == nil && fi.Mode().IsRegular() {
		if err := copyFile(c.LogPath, filepath.Join(work, ContainerLogFile)); err != nil {
			return fmt.Errorf("copying the container's log: %w", err)
		}
	}
	if err := writeJSON(filepath.Join(work, StatusDumpFile), c); err != nil {
		return err
	}
	if err := s.writeConfig(c, dumped, work); err != nil {
		return err
	}
	tmp, err := pack(work, partial, &undo)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, r.Location); err != nil {
		return err
	}
	undo.Release()
	lg.WithFields(map[string]any{"location": r.Location, "took": time.Since(t0).Round(time.Millisecond)}).Info("checkpoint written")
	return nil
}

func (s *Service) writeConfig(c *state.Container, dumped time.Time, work string) error {
	cfg, err := protojson.Marshal(c.Config)
	if err != nil {
		return err
	}
	return writeJSON(filepath.Join(work, ConfigDumpFile), &Config{
		ID:              string(c.ID),
		Name:            c.Name,
		RootfsImage:     c.Config.GetImage().GetUserSpecifiedImage(),
		RootfsImageRef:  c.ImageID,
		RootfsImageName: c.ImageRef,
		OCIRuntime:      RuntimeName,
		CreatedTime:     time.Unix(0, c.CreatedAt).UTC(),
		CheckpointedAt:  dumped.UTC(),
		Noded: &Noded{
			Format: FormatVersion, Version: s.o.Version, ContainerConfig: cfg,
			ImageID: c.ImageID, ImageRef: c.ImageRef,
		},
	})
}

// writeRootfsDiff writes rootfs-diff.tar (the files the writable layer
// added or changed, read from the mounted root file system) and
// deleted.files (the image's files it removed), as CRI-O does.
func (s *Service) writeRootfsDiff(c *state.Container, spec []byte, work string) error {
	var sp struct {
		Root *struct {
			Path string `json:"path"`
		} `json:"root"`
	}
	if err := json.Unmarshal(spec, &sp); err != nil || sp.Root == nil || sp.Root.Path == "" {
		return fmt.Errorf("the container's spec names no root file system")
	}
	rootfs := sp.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(c.Bundle, rootfs)
	}
	changes, err := s.o.Layers.Changes(c.StorageID)
	if err != nil {
		return err
	}
	var kept []archive.Change
	deleted := []string{}
	for _, ch := range changes {
		if ch.Kind == archive.ChangeDelete {
			deleted = append(deleted, ch.Path)
			continue
		}
		kept = append(kept, ch)
	}
	if err := writeJSON(filepath.Join(work, DeletedFilesFile), deleted); err != nil {
		return err
	}
	rc, err := archive.ExportChanges(rootfs, kept, nil, nil)
	if err != nil {
		return fmt.Errorf("exporting the writable layer: %w", err)
	}
	defer rc.Close()
	f, err := os.OpenFile(filepath.Join(work, RootfsDiffFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("exporting the writable layer: %w", err)
	}
	return f.Close()
}

// compressionOf is the compression a location's name asks for.
func compressionOf(location string) archive.Compression {
	switch {
	case strings.HasSuffix(location, ".tar.gz"), strings.HasSuffix(location, ".tgz"):
		return archive.Gzip
	case strings.HasSuffix(location, ".tar.zst"):
		return archive.Zstd
	}
	return archive.Uncompressed
}

// pack writes the archive of dir (less CRIU's work directory) to tmp,
// next to the location, synced, whose removal goes on undo.
func pack(dir, tmp string, undo *cleanup.Stack) (string, error) {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", errdefs.InvalidArgument("checkpoint location %s: %v", filepath.Dir(tmp), err)
	}
	undo.Push("remove partial archive", func(context.Context) error { return os.Remove(tmp) })
	rc, err := archive.TarWithOptions(dir, &archive.TarOptions{
		Compression:     compressionOf(strings.TrimSuffix(tmp, ".noded-partial")),
		ExcludePatterns: []string{".criu-work"},
	})
	if err != nil {
		f.Close()
		return "", err
	}
	_, err = io.Copy(f, rc)
	rc.Close()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing checkpoint archive: %w", err)
	}
	return tmp, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func protoClone(c *runtimeapi.ContainerConfig) *runtimeapi.ContainerConfig {
	if c == nil {
		return &runtimeapi.ContainerConfig{}
	}
	return proto.Clone(c).(*runtimeapi.ContainerConfig)
}
