// Package checkpoint writes and reads noded's container checkpoint
// archives: one tar file (optionally gzip or zstd compressed) in the
// layout CRI-O and Podman use, so that checkpointctl can read it:
//
//	checkpoint/       CRIU's image files of the container's processes
//	dump.log          CRIU's log of the dump
//	config.dump       the container's metadata (checkpointctl's fields:
//	                  id, name, rootfsImage*, runtime, times) and, under
//	                  "noded", what a restore needs: the format version and
//	                  the kubelet's ContainerConfig
//	spec.dump         the container's OCI spec (its bundle's config.json)
//	status.dump       noded's record of the container at the dump
//	rootfs-diff.tar   the files its writable layer added or changed
//	deleted.files     JSON list of the image's files it deleted
//	container.log     its CRI log up to the dump
//
// A restore (Open, then Unpack) takes only archives that noded wrote in a
// format it knows: another runtime's archive lacks the "noded" part of
// config.dump, and its spec would not fit noded's pods anyway.
package checkpoint

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// The archive's members (checkpointctl's names).
const (
	ImagesDir        = "checkpoint"
	ConfigDumpFile   = "config.dump"
	SpecDumpFile     = "spec.dump"
	StatusDumpFile   = "status.dump"
	RootfsDiffFile   = "rootfs-diff.tar"
	DeletedFilesFile = "deleted.files"
	DumpLogFile      = "dump.log"
	ContainerLogFile = "container.log"
)

// FormatVersion is the version of noded's part of config.dump; a restore
// refuses any other.
const FormatVersion = 1

// RuntimeName is config.dump's runtime.
const RuntimeName = "noded"

// Config is config.dump: checkpointctl's fields (a subset of Podman's
// container config, which CRI-O writes too), then noded's.
type Config struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImage     string    `json:"rootfsImage,omitempty"`
	RootfsImageRef  string    `json:"rootfsImageRef,omitempty"`
	RootfsImageName string    `json:"rootfsImageName,omitempty"`
	OCIRuntime      string    `json:"runtime,omitempty"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`
	RestoredAt      time.Time `json:"restoredTime"`
	Restored        bool      `json:"restored"`
	Noded           *Noded    `json:"noded,omitempty"`
}

// Noded is noded's part of config.dump.
type Noded struct {
	// Format is FormatVersion of the noded that wrote it; Version that
	// noded's version (informational).
	Format  int    `json:"format"`
	Version string `json:"version,omitempty"`
	// ContainerConfig is the kubelet's CreateContainer request (protojson).
	ContainerConfig json.RawMessage `json:"containerConfig"`
	// ImageID is the resolved image ("sha256:…"), ImageRef as asked.
	ImageID  string `json:"imageId"`
	ImageRef string `json:"imageRef"`
}

// untarFile extracts the (possibly compressed) tar file src into dest,
// chrooted there.
func untarFile(src, dest string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return chrootarchive.Untar(f, dest, &archive.TarOptions{})
}

// maxMetadata bounds config.dump and spec.dump as read by Open.
const maxMetadata = 16 << 20

// Archive is an opened checkpoint archive whose metadata was checked.
type Archive struct {
	Path   string
	Config Config
	// Container is the checkpointed container's CRI config.
	Container *runtimeapi.ContainerConfig
}

// IsArchiveRef says whether an image reference of CreateContainer names a
// checkpoint archive: an absolute path (CRI-O's convention; no image
// reference starts with a slash).
func IsArchiveRef(ref string) bool { return filepath.IsAbs(ref) }

// Open reads the metadata of the archive at path and checks that noded
// can restore it: InvalidArgument, saying why, for a file that is not a
// tar archive, one without config.dump, spec.dump or CRIU images, one of
// another runtime or of another format version.
func Open(path string) (*Archive, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, errdefs.InvalidArgument("checkpoint archive %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, errdefs.InvalidArgument("checkpoint archive %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, errdefs.InvalidArgument("checkpoint archive %s: %v", path, err)
	}
	defer f.Close()
	members, err := readMembers(f, ConfigDumpFile, SpecDumpFile)
	if err != nil {
		return nil, errdefs.InvalidArgument("checkpoint archive %s is not a readable tar archive: %v", path, err)
	}
	for _, name := range []string{ConfigDumpFile, SpecDumpFile} {
		if _, ok := members.files[name]; !ok {
			return nil, errdefs.InvalidArgument("checkpoint archive %s has no %s: not a container checkpoint", path, name)
		}
	}
	if !members.images {
		return nil, errdefs.InvalidArgument("checkpoint archive %s has no CRIU images (%s/inventory.img)", path, ImagesDir)
	}
	a := &Archive{Path: path}
	if err := json.Unmarshal(members.files[ConfigDumpFile], &a.Config); err != nil {
		return nil, errdefs.InvalidArgument("checkpoint archive %s: %s: %v", path, ConfigDumpFile, err)
	}
	n := a.Config.Noded
	switch {
	case n == nil:
		rt := a.Config.OCIRuntime
		if rt == "" {
			rt = "unknown"
		}
		return nil, errdefs.InvalidArgument("checkpoint archive %s was written by another runtime (%s: runtime %q, no noded metadata): noded restores only its own checkpoints", path, ConfigDumpFile, rt)
	case n.Format != FormatVersion:
		return nil, errdefs.InvalidArgument("checkpoint archive %s has noded format %d (noded %s); this noded reads format %d", path, n.Format, n.Version, FormatVersion)
	case n.ImageID == "":
		return nil, errdefs.InvalidArgument("checkpoint archive %s: %s names no image", path, ConfigDumpFile)
	}
	a.Container = &runtimeapi.ContainerConfig{}
	if err := protojson.Unmarshal(n.ContainerConfig, a.Container); err != nil {
		return nil, errdefs.InvalidArgument("checkpoint archive %s: the container config in %s: %v", path, ConfigDumpFile, err)
	}
	var spec struct {
		Process *json.RawMessage `json:"process"`
	}
	if err := json.Unmarshal(members.files[SpecDumpFile], &spec); err != nil || spec.Process == nil {
		return nil, errdefs.InvalidArgument("checkpoint archive %s: %s is not an OCI spec", path, SpecDumpFile)
	}
	return a, nil
}

type members struct {
	files  map[string][]byte
	images bool
}

// readMembers reads the named small members of a (possibly compressed)
// tar stream, and notes whether CRIU's inventory is there.
func readMembers(r io.Reader, names ...string) (*members, error) {
	dr, err := archive.DecompressStream(r)
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	m := &members{files: map[string][]byte{}}
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(filepath.Clean("/"+h.Name), "/")
		if name == ImagesDir+"/inventory.img" {
			m.images = true
		}
		for _, want := range names {
			if name != want || h.Typeflag != tar.TypeReg {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxMetadata+1))
			if err != nil {
				return nil, err
			}
			if len(b) > maxMetadata {
				return nil, fmt.Errorf("%s is larger than %d bytes", name, maxMetadata)
			}
			m.files[name] = b
		}
	}
	return m, nil
}

// ContainerConfig is the config of the container to create from the
// archive, given the kubelet's request: the request's (its metadata,
// labels, annotations, mounts, log path and devices are the new pod's),
// with the checkpointed container's image, and its process (command,
// arguments, working directory, environment) and stdio where the request
// leaves them unset; the restored process is the dumped one whatever its
// spec says, but its stdio and mounts must match the dump.
func (a *Archive) ContainerConfig(req *runtimeapi.ContainerConfig) *runtimeapi.ContainerConfig {
	cfg := protoClone(req)
	old := a.Container
	cfg.Image = &runtimeapi.ImageSpec{Image: a.Config.Noded.ImageID, UserSpecifiedImage: a.Config.Noded.ImageRef}
	if len(cfg.Command) == 0 && len(cfg.Args) == 0 {
		cfg.Command, cfg.Args = old.Command, old.Args
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = old.WorkingDir
	}
	if len(cfg.Envs) == 0 {
		cfg.Envs = old.Envs
	}
	cfg.Stdin, cfg.StdinOnce, cfg.Tty = old.Stdin, old.StdinOnce, old.Tty
	return cfg
}

// Unpack extracts the archive into dir (which must be empty or absent):
// CRIU's images end up in dir/checkpoint. Then it applies the writable
// layer's changes to rootfs, the new container's mounted root file
// system: rootfs-diff.tar's files are written, deleted.files are removed.
// Both extractions run chrooted into their destination (chrootarchive,
// through the reexec hook noded's main has), so that a crafted archive's
// symlinks cannot send a file outside; the deletions are confined to
// rootfs with securejoin. Needs root.
func (a *Archive) Unpack(dir, rootfs string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := untarFile(a.Path, dir); err != nil {
		return fmt.Errorf("extracting checkpoint archive %s: %w", a.Path, err)
	}
	diff := filepath.Join(dir, RootfsDiffFile)
	if _, err := os.Stat(diff); err == nil {
		if err := untarFile(diff, rootfs); err != nil {
			return fmt.Errorf("applying %s: %w", RootfsDiffFile, err)
		}
		_ = os.Remove(diff)
	}
	b, err := os.ReadFile(filepath.Join(dir, DeletedFilesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var deleted []string
	if err := json.Unmarshal(b, &deleted); err != nil {
		return errdefs.InvalidArgument("checkpoint archive %s: %s: %v", a.Path, DeletedFilesFile, err)
	}
	for _, p := range deleted {
		full, err := securejoin.SecureJoin(rootfs, p)
		if err != nil {
			return fmt.Errorf("deleted file %q: %w", p, err)
		}
		if full == filepath.Clean(rootfs) {
			continue
		}
		if err := os.RemoveAll(full); err != nil {
			return fmt.Errorf("removing deleted file %q: %w", p, err)
		}
	}
	return nil
}
