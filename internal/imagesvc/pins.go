package imagesvc

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/storage"
)

// layerPins orders layer deletion against pulls. A commit pins the layers
// of its image before it looks for them and unpins them once the image
// record holds them (or, after a failure, deletes those of them nothing
// uses); an image removal deletes the image and its layers only when none
// of those layers is pinned, and waits otherwise. So a removal never takes
// a layer away from a pull that found it in storage a moment earlier.
//
// It owns the pin counts and every deletion of image layers after
// start-up. Lock rule: mu guards pins and changed and is held across each
// deletion (with the storage calls that decide it), so a pin taken after a
// removal checked the pins waits for that removal to end; no other lock is
// taken while holding it. changed is closed (and replaced) whenever pins
// drop, waking removals that wait.
type layerPins struct {
	images *storage.ImageStore
	layers *storage.LayerStore
	log    *logrus.Entry // for cleanups, which outlive the request

	mu      sync.Mutex
	pins    map[storage.LayerID]int
	changed chan struct{}
}

func newLayerPins(store *storage.Store, logger *logrus.Entry) *layerPins {
	return &layerPins{
		images: store.Images(), layers: store.Layers(), log: logger,
		pins: map[storage.LayerID]int{}, changed: make(chan struct{}),
	}
}

// pin protects layers a pull is about to use from removals.
func (s *layerPins) pin(ids []storage.LayerID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.pins[id]++
	}
}

// unpin drops a pull's pins; after a failure (cleanup) it deletes the
// layers of the pull that no pull, image, container or other layer uses.
func (s *layerPins) unpin(ids []storage.LayerID, cleanup bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.pins[id]--; s.pins[id] <= 0 {
			delete(s.pins, id)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	if !cleanup {
		return
	}
	for i := len(ids) - 1; i >= 0; i-- {
		id := ids[i]
		if s.pins[id] > 0 || !s.layers.Exists(id) {
			continue
		}
		if err := s.layers.Delete(id); err != nil {
			if !errors.Is(err, errdefs.ErrFailedPrecondition) {
				s.log.WithError(err).WithField("layer", id).Warn("removing a layer of a failed pull")
			}
			continue
		}
		s.log.WithField("layer", id).Debug("removed a layer of a failed pull")
	}
}

// deleteImage deletes an image and the layers only it uses, waiting while
// one of those layers is pinned by a pull in flight. An image that is not
// there is no error.
func (s *layerPins) deleteImage(ctx context.Context, id storage.ImageID) error {
	for {
		s.mu.Lock()
		layers, err := s.images.Delete(id, true)
		if err != nil {
			s.mu.Unlock()
			if errdefs.IsNotFound(err) {
				return nil
			}
			return err
		}
		if !slices.ContainsFunc(layers, func(l storage.LayerID) bool { return s.pins[l] > 0 }) {
			_, err := s.images.Delete(id, false)
			s.mu.Unlock()
			if errdefs.IsNotFound(err) {
				err = nil
			}
			return err
		}
		changed := s.changed
		s.mu.Unlock()
		log.FromContext(ctx).WithField("id", id.String()).Debug("removal waits for a pull that uses the image's layers")
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
