package storage

import (
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	cstorage "go.podman.io/storage"
)

// Layer is a layer record.
type Layer struct {
	ID     LayerID
	Parent LayerID
	// CompressedDigest is the digest of the blob it was unpacked from;
	// DiffID (the uncompressed digest) identifies its content.
	CompressedDigest digest.Digest
	DiffID           digest.Digest
	CompressedSize   int64
	UncompressedSize int64
}

// LayerStore is the view of the store's layers (Store.Layers): it owns
// every call on layers, image layers (read-only, ID = ChainID) and
// containers' writable layers alike. Like ImageStore it has no state or
// lock of its own.
type LayerStore struct {
	s cstorage.Store
}

func toLayer(l *cstorage.Layer) *Layer {
	return &Layer{
		ID:               LayerID(l.ID),
		Parent:           LayerID(l.Parent),
		CompressedDigest: l.CompressedDigest,
		DiffID:           l.UncompressedDigest,
		CompressedSize:   l.CompressedSize,
		UncompressedSize: l.UncompressedSize,
	}
}

// Get returns the layer with this ID (errdefs NotFound when missing).
func (s *LayerStore) Get(id LayerID) (*Layer, error) {
	l, err := s.s.Layer(string(id))
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("layer %s", id))
	}
	return toLayer(l), nil
}

// Exists reports whether the layer is in the store.
func (s *LayerStore) Exists(id LayerID) bool {
	_, err := s.s.Layer(string(id))
	return err == nil
}

// List lists every layer.
func (s *LayerStore) List() ([]Layer, error) {
	ls, err := s.s.Layers()
	if err != nil {
		return nil, mapErr(err, "listing layers")
	}
	out := make([]Layer, len(ls))
	for i := range ls {
		out[i] = *toLayer(&ls[i])
	}
	return out, nil
}

// PutLayerOptions describe the content handed to Put.
type PutLayerOptions struct {
	// CompressedDigest and CompressedSize describe the blob the diff came
	// from (already verified by the caller).
	CompressedDigest digest.Digest
	CompressedSize   int64
	// DiffID is the digest of the uncompressed diff. The caller verifies
	// it while streaming (containers/storage trusts it).
	DiffID digest.Digest
}

// Put creates a read-only layer with the given ID on top of parent
// ("" for a base layer) from an uncompressed tar stream. If diff returns
// an error, the layer is not created. The layer is complete only if the
// call succeeds.
func (s *LayerStore) Put(id, parent LayerID, diff io.Reader, o PutLayerOptions) (*Layer, error) {
	opts := &cstorage.LayerOptions{
		OriginalDigest:     o.CompressedDigest,
		UncompressedDigest: o.DiffID,
	}
	if o.CompressedSize > 0 {
		size := o.CompressedSize
		opts.OriginalSize = &size
	}
	l, _, err := s.s.PutLayer(string(id), string(parent), nil, "", false, opts, diff)
	if err != nil {
		return nil, mapErr(err, fmt.Sprintf("creating layer %s", id))
	}
	return toLayer(l), nil
}

// Delete deletes a layer that no layer, image or container uses
// (otherwise an errdefs FailedPrecondition error).
func (s *LayerStore) Delete(id LayerID) error {
	if err := s.s.DeleteLayer(string(id)); err != nil {
		return mapErr(err, fmt.Sprintf("deleting layer %s", id))
	}
	return nil
}
