package storage

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	cstorage "go.podman.io/storage"
	drivers "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
	"go.podman.io/storage/pkg/ioutils"
	"go.podman.io/storage/pkg/tarlog"
)

// ErrStagingUnsupported is Stage's answer when the graph driver cannot
// unpack a layer before its parent exists (only overlay can); the caller
// then puts the layer with Put, in order. The diff has not been read.
var ErrStagingUnsupported = errors.New("the storage driver cannot stage layers")

// StagedLayer is a layer's content unpacked into a staging directory of
// the graph driver, not yet a layer: Commit makes it one on its parent,
// Discard removes it. Unpacking needs no parent, so the layers of one image
// are unpacked side by side and committed bottom up (containers/storage's
// PrepareStagedLayer and ApplyStagedLayer, the path containers/image takes
// for partial pulls; overlay's diff directory does not depend on the lower
// layers).
//
// Lifecycle: Stage → exactly one of Commit or Discard. A staging
// directory a crash leaves behind is removed by GarbageCollect.
type StagedLayer struct {
	out *drivers.DriverWithDifferOutput
}

// Stage unpacks an uncompressed layer tar into a new staging directory,
// recording what Put records (tar-split data to rebuild the diff, the
// owners in it, the size). As with Put, diff's error (a verifier's) stops
// the unpack and nothing is left. o.DiffID and o.CompressedDigest are
// trusted: the caller verifies them while streaming.
func (s *LayerStore) Stage(diff io.Reader, o PutLayerOptions) (*StagedLayer, error) {
	d := &tarDiffer{diff: diff, opts: o}
	out, err := s.s.PrepareStagedLayer(nil, d)
	if errors.Is(err, cstorage.ErrNotSupported) && !d.ran {
		return nil, ErrStagingUnsupported
	}
	if err != nil {
		if out != nil && out.Target != "" {
			_ = s.s.CleanupStagedLayer(out) // also closes the tar-split file
		} else {
			d.closeTarSplit()
		}
		return nil, mapErr(err, "unpacking layer "+o.DiffID.String())
	}
	return &StagedLayer{out: out}, nil
}

// Commit makes the staged content the layer id on parent ("" for a base
// layer), which must exist. On failure the staged content is removed.
func (s *LayerStore) Commit(id, parent LayerID, st *StagedLayer) (*Layer, error) {
	// containers/storage would apply the staged content over an existing
	// layer's (replacing the files under whatever runs on it): a layer
	// that appeared meanwhile is kept as it is. (noded makes each layer
	// in one place at a time; this guards the store, not that.)
	if l, err := s.Get(id); err == nil {
		return l, s.Discard(st)
	}
	l, err := s.s.ApplyStagedLayer(cstorage.ApplyStagedLayerOptions{
		ID:          string(id),
		ParentLayer: string(parent),
		DiffOutput:  st.out,
		DiffOptions: &drivers.ApplyDiffWithDifferOpts{},
	})
	// The staging directory, now empty (its content moved into the
	// layer), or still full after a failure.
	dErr := s.Discard(st)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("creating layer %s", id))
	}
	if dErr != nil {
		return nil, dErr
	}
	return toLayer(l), nil
}

// Discard removes staged content that will not be committed.
func (s *LayerStore) Discard(st *StagedLayer) error {
	if err := s.s.CleanupStagedLayer(st.out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing a staged layer: %w", err)
	}
	return nil
}

// tarDiffer is a containers/storage differ for a plain layer tarball: it
// unpacks the stream the way the overlay driver's ApplyDiff does (in a
// chroot, with the driver's whiteout format and ID mappings) while
// recording the tar-split data and owners, as PutLayer would.
type tarDiffer struct {
	diff io.Reader
	opts PutLayerOptions

	// ran and tarSplit are set by ApplyDiff, which PrepareStagedLayer
	// calls synchronously.
	ran      bool
	tarSplit *os.File
}

func (d *tarDiffer) ApplyDiff(dest string, options *archive.TarOptions, _ *drivers.DifferOptions) (drivers.DriverWithDifferOutput, error) {
	d.ran = true
	// The tar-split data goes to an unlinked file beside dest (the staging
	// directory, on the store's filesystem), which ApplyStagedLayer reads
	// back: nothing to remove if noded dies before.
	ts, err := os.CreateTemp(filepath.Dir(dest), "tar-split-")
	if err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	if err := os.Remove(ts.Name()); err != nil {
		ts.Close()
		return drivers.DriverWithDifferOutput{}, err
	}
	d.tarSplit = ts

	var (
		uids, gids = map[uint32]struct{}{}, map[uint32]struct{}{}
		rootMode   *os.FileMode
	)
	owners, err := tarlog.NewLogger(func(h *tar.Header) {
		if name := path.Clean("/" + h.Name); name == "/" && h.Typeflag == tar.TypeDir {
			m := os.FileMode(h.Mode) & os.ModePerm
			rootMode = &m
		}
		if !strings.HasPrefix(path.Base(h.Name), archive.WhiteoutPrefix) {
			uids[uint32(h.Uid)] = struct{}{}
			gids[uint32(h.Gid)] = struct{}{}
		}
	})
	if err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	size := ioutils.NewWriteCounter(owners)
	// The packer writes one short JSON line per entry.
	bw := bufio.NewWriterSize(ts, 64<<10)
	payload, done, err := asm.NewInputTarStreamWithDone(io.TeeReader(d.diff, size), tsstorage.NewJSONPacker(bw), tsstorage.NewDiscardFilePutter())
	if err != nil {
		owners.Close()
		return drivers.DriverWithDifferOutput{}, err
	}
	untarErr := chrootarchive.UntarUncompressed(payload, dest, options)
	// Whatever the unpacker left (padding after the end of the archive)
	// still goes through the verifier: its verdict comes at the end of the
	// stream.
	if untarErr == nil {
		_, untarErr = io.Copy(io.Discard, payload)
	}
	payload.Close()
	doneErr := <-done
	ownersErr := owners.Close() // before uids and gids are read
	if err := errors.Join(untarErr, doneErr, ownersErr, bw.Flush()); err != nil {
		return drivers.DriverWithDifferOutput{}, err
	}
	return drivers.DriverWithDifferOutput{
		Size:               size.Count,
		UIDs:               sortedIDs(uids),
		GIDs:               sortedIDs(gids),
		UncompressedDigest: d.opts.DiffID,
		CompressedDigest:   d.opts.CompressedDigest,
		TarSplit:           ts,
		RootDirMode:        rootMode,
	}, nil
}

func (d *tarDiffer) Close() error { return nil }

// closeTarSplit closes the tar-split file of a differ whose output was
// lost (PrepareStagedLayer failed before handing it back).
func (d *tarDiffer) closeTarSplit() {
	if d.tarSplit != nil {
		d.tarSplit.Close()
		d.tarSplit = nil
	}
}

func sortedIDs(m map[uint32]struct{}) []uint32 {
	out := make([]uint32, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
