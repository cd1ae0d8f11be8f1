// Package storage is noded's one containers/storage store: the overlay
// graph that holds image layers, images and the writable layers of
// containers. It is opened once at start-up and shut down on exit.
//
// The package owns every call into containers/storage so that the rest of
// noded deals in typed IDs (ImageID, LayerID, ContainerID) and errdefs
// classes rather than c/storage's sentinel errors. It does no network I/O:
// internal/imagesvc pulls and commits through it, and the runtime side
// creates, mounts and deletes container layers through it.
//
// Conventions shared with CRI-O, podman and skopeo, so those tools read a
// noded store the same way:
//   - an image's ID is the hex of its config digest;
//   - big data "manifest" is the image's (per-platform) manifest,
//     "manifest-<digest>" every manifest it was pulled by (including a
//     manifest list), and "<config digest>" the config;
//   - names are fully qualified references ("docker.io/library/x:tag" or
//     "...@sha256:...").
//
// Layer IDs are the hex of the OCI ChainID of the layer (see LayerIDs), so
// two images sharing a base share its layers and a second pull finds them.
//
// The Store is split by what it holds: Store.Images (ImageStore),
// Store.Layers (LayerStore) and Store.Containers (ContainerStore) are
// views on the one containers/storage store, each with the calls of its
// kind of record; the Store itself keeps what concerns the whole graph
// (opening and closing it, its directories, garbage collection, disk
// usage).
package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	cstorage "go.podman.io/storage"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
)

// ImageID is an image's ID: the hex encoding of its config digest (64
// lowercase hex characters, no algorithm prefix).
type ImageID string

// LayerID is a layer's ID. For image layers it is the hex encoding of the
// layer's OCI ChainID; container layers get the container's ID.
type LayerID string

// ContainerID is a storage container's ID: the CRI container's own ID
// (the pod's ID for the pause container), so one type serves both.
type ContainerID = ids.ContainerID

var hexID = regexp.MustCompile(`^[a-f0-9]{64}$`)

// ParseImageID accepts "sha256:<hex>" or "<hex>" (64 lowercase hex
// characters) and returns the ID; ok is false for anything else.
func ParseImageID(s string) (ImageID, bool) {
	s = strings.TrimPrefix(s, digest.Canonical.String()+":")
	if !hexID.MatchString(s) {
		return "", false
	}
	return ImageID(s), true
}

// ImageIDFromDigest returns the ID of the image whose config has digest d.
func ImageIDFromDigest(d digest.Digest) ImageID { return ImageID(d.Encoded()) }

// Digest returns the config digest the ID encodes ("sha256:<hex>").
func (id ImageID) Digest() digest.Digest {
	return digest.NewDigestFromEncoded(digest.Canonical, string(id))
}

// String is the "sha256:<hex>" form that the CRI reports as Image.Id.
func (id ImageID) String() string { return id.Digest().String() }

// LayerIDs returns the layer IDs of a stack of layers given their DiffIDs,
// bottom first: the hex of each layer's OCI ChainID,
// ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
func LayerIDs(diffIDs []digest.Digest) []LayerID {
	ids := make([]LayerID, len(diffIDs))
	var chain digest.Digest
	for i, d := range diffIDs {
		if i == 0 {
			chain = d
		} else {
			chain = digest.Canonical.FromString(chain.String() + " " + d.String())
		}
		ids[i] = LayerID(chain.Encoded())
	}
	return ids
}

// Options say where the store lives and how its driver is set up; they
// come from noded's configuration (root, runroot, storage-driver,
// storage-options).
type Options struct {
	Root          string
	RunRoot       string
	Driver        string
	DriverOptions []string
	// Log is the store's logger (garbage collection, start-up); nil
	// discards.
	Log *logrus.Entry
}

// Store is the opened containers/storage store. It owns the store's
// lifecycle (Open, Close), its directories, the garbage collection of what
// interrupted operations left, and the disk usage accounting (FsInfo); the
// records themselves are reached through its views Images, Layers and
// Containers, which share the one containers/storage store (itself safe
// for concurrent use: it locks its own files).
//
// Lock rule: fsMu serializes FsInfo and guards fsCache; nothing else
// takes it.
type Store struct {
	s       cstorage.Store
	root    string
	runRoot string
	driver  string
	log     *logrus.Entry

	images     *ImageStore
	layers     *LayerStore
	containers *ContainerStore

	fsMu    sync.Mutex
	fsCache map[LayerID]usage // disk usage of immutable image layers
}

// Open opens (creating if needed) the store. The caller must Close it.
func Open(o Options) (*Store, error) {
	o.Log = log.Or(o.Log)
	if o.Root == "" || o.RunRoot == "" || o.Driver == "" {
		return nil, errdefs.InvalidArgument("storage: root, runroot and driver must be set")
	}
	for _, d := range []string{o.Root, o.RunRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
	}
	s, err := cstorage.GetStore(cstorage.StoreOptions{
		GraphRoot:          o.Root,
		RunRoot:            o.RunRoot,
		GraphDriverName:    o.Driver,
		GraphDriverOptions: append([]string(nil), o.DriverOptions...),
	})
	if err != nil {
		return nil, fmt.Errorf("opening containers/storage at %s (driver %s): %w", o.Root, o.Driver, err)
	}
	st := &Store{
		s: s, root: s.GraphRoot(), runRoot: s.RunRoot(), driver: s.GraphDriverName(),
		log: o.Log, fsCache: map[LayerID]usage{},
		images: &ImageStore{s: s}, layers: &LayerStore{s: s}, containers: &ContainerStore{s: s},
	}
	o.Log.WithFields(logrus.Fields{"root": st.root, "runroot": st.runRoot, "driver": st.driver}).Info("image store opened")
	return st, nil
}

// Close unmounts everything the store mounted and releases it.
func (s *Store) Close() error {
	_, err := s.s.Shutdown(true)
	if err != nil {
		return fmt.Errorf("shutting down containers/storage: %w", err)
	}
	return nil
}

// Root is the graph root (image and container layers).
func (s *Store) Root() string { return s.root }

// RunRoot is the run root (mount state).
func (s *Store) RunRoot() string { return s.runRoot }

// Driver is the graph driver's name.
func (s *Store) Driver() string { return s.driver }

// Images is the view of the store's image records.
func (s *Store) Images() *ImageStore { return s.images }

// Layers is the view of the store's layers.
func (s *Store) Layers() *LayerStore { return s.layers }

// Containers is the view of the store's containers (containers' writable
// layers and directories).
func (s *Store) Containers() *ContainerStore { return s.containers }

// TempDir returns a directory for temporary files of the given purpose
// (e.g. "pull") on the graph root's filesystem, created if needed. It is
// on the graph root rather than the run root because the run root is
// usually a tmpfs, i.e. memory, and downloaded blobs can be gigabytes.
func (s *Store) TempDir(purpose string) (string, error) {
	dir := filepath.Join(s.root, "noded-tmp", purpose)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("storage: %w", err)
	}
	return dir, nil
}

// GarbageCollect removes what interrupted operations left: incomplete
// layers and unreferenced data of containers/storage, noded's temporary
// files and staged layers, and layers that belong to no image and no container (the remains
// of a pull that a crash cut short). It must run before any pull starts.
func (s *Store) GarbageCollect() error {
	if err := os.RemoveAll(filepath.Join(s.root, "noded-tmp")); err != nil {
		s.log.WithError(err).Warn("removing temporary files")
	}
	// Layers that were being unpacked (LayerStore.Stage): the overlay
	// driver removes its staging directories only at a clean shutdown.
	if err := os.RemoveAll(filepath.Join(s.root, s.driver, "staging")); err != nil {
		s.log.WithError(err).Warn("removing staged layers")
	}
	if err := s.s.GarbageCollect(); err != nil {
		s.log.WithError(err).Warn("containers/storage garbage collection")
	}
	orphans, err := s.orphanLayers()
	if err != nil {
		return err
	}
	for _, id := range orphans {
		if err := s.s.DeleteLayer(string(id)); err != nil {
			s.log.WithError(err).WithField("layer", id).Warn("removing unreferenced layer")
			continue
		}
		s.log.WithField("layer", id).Info("removed a layer no image or container uses")
	}
	return nil
}

// orphanLayers returns the layers outside every image's and container's
// chain, children before parents so they can be deleted in order.
func (s *Store) orphanLayers() ([]LayerID, error) {
	layers, err := s.s.Layers()
	if err != nil {
		return nil, mapErr(err, "listing layers")
	}
	images, err := s.s.Images()
	if err != nil {
		return nil, mapErr(err, "listing images")
	}
	containers, err := s.s.Containers()
	if err != nil {
		return nil, mapErr(err, "listing containers")
	}
	parent := make(map[string]string, len(layers))
	for _, l := range layers {
		parent[l.ID] = l.Parent
	}
	used := map[string]bool{}
	mark := func(id string) {
		for id != "" && !used[id] {
			used[id] = true
			id = parent[id]
		}
	}
	for _, img := range images {
		mark(img.TopLayer)
		for _, m := range img.MappedTopLayers {
			mark(m)
		}
	}
	for _, c := range containers {
		mark(c.LayerID)
	}
	children := map[string]int{}
	for _, l := range layers {
		if !used[l.ID] && l.Parent != "" {
			children[l.Parent]++
		}
	}
	// Peel leaves first.
	var out []LayerID
	var queue []string
	for _, l := range layers {
		if !used[l.ID] && children[l.ID] == 0 {
			queue = append(queue, l.ID)
		}
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		out = append(out, LayerID(id))
		if p := parent[id]; p != "" && !used[p] {
			if children[p]--; children[p] == 0 {
				queue = append(queue, p)
			}
		}
	}
	return out, nil
}

// mapErr gives a containers/storage error its errdefs class, keeping the
// original in the chain.
func mapErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cstorage.ErrImageUnknown), errors.Is(err, cstorage.ErrNotAnImage),
		errors.Is(err, cstorage.ErrLayerUnknown), errors.Is(err, cstorage.ErrNotALayer),
		errors.Is(err, cstorage.ErrContainerUnknown), errors.Is(err, cstorage.ErrNotAContainer),
		errors.Is(err, cstorage.ErrParentUnknown), errors.Is(err, os.ErrNotExist):
		return errdefs.NotFound("%s: %w", what, err)
	case errors.Is(err, cstorage.ErrImageUsedByContainer), errors.Is(err, cstorage.ErrLayerUsedByContainer),
		errors.Is(err, cstorage.ErrLayerHasChildren), errors.Is(err, cstorage.ErrLayerUsedByImage),
		errors.Is(err, cstorage.ErrParentIsContainer), errors.Is(err, cstorage.ErrLayerNotMounted):
		return errdefs.FailedPrecondition("%s: %w", what, err)
	case errors.Is(err, cstorage.ErrDuplicateID), errors.Is(err, cstorage.ErrDuplicateName),
		errors.Is(err, cstorage.ErrDuplicateImageNames), errors.Is(err, cstorage.ErrDuplicateLayerNames):
		return errdefs.AlreadyExists("%s: %w", what, err)
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
}
