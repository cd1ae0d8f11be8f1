package imagesvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/archive"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/storage"
	"github.com/noded-dev/noded/internal/tracing"
)

// maxConfigSize bounds an image config read into memory.
const maxConfigSize = 16 << 20

// plan is what committing one image needs, taken from its manifest.
type plan struct {
	id             storage.ImageID
	src            *blobSource
	config         types.BlobInfo
	layers         []types.BlobInfo
	manifest       []byte
	manifestDigest digest.Digest
}

// planFromManifest checks that a (per-platform) manifest describes a
// container image noded can run and returns what to fetch.
func planFromManifest(blob []byte, mime string, d digest.Digest, src *blobSource) (*plan, error) {
	if mime == "" {
		mime = manifest.GuessMIMEType(blob)
	}
	m, err := manifest.FromBlob(blob, manifest.NormalizedMIMEType(mime))
	if err != nil {
		return nil, errdefs.InvalidArgument("parsing manifest %s: %v", d, err)
	}
	cfg := m.ConfigInfo()
	if cfg.Digest == "" {
		return nil, errdefs.FailedPrecondition("manifest %s is a Docker schema 1 manifest, which noded does not support", d)
	}
	if cfg.Digest.Algorithm() != digest.Canonical {
		return nil, errdefs.FailedPrecondition("image config digest %s: only sha256 is supported", cfg.Digest)
	}
	switch cfg.MediaType {
	case "", ocispec.MediaTypeImageConfig, manifest.DockerV2Schema2ConfigMediaType:
	default:
		return nil, errdefs.InvalidArgument("manifest %s is not a container image (config media type %q)", d, cfg.MediaType)
	}
	p := &plan{id: storage.ImageIDFromDigest(cfg.Digest), src: src, config: cfg, manifest: blob, manifestDigest: d}
	for _, l := range m.LayerInfos() {
		if l.EmptyLayer {
			continue
		}
		if strings.Contains(l.MediaType, "+encrypted") {
			return nil, errdefs.FailedPrecondition("layer %s is encrypted, which noded does not support", l.Digest)
		}
		p.layers = append(p.layers, l.BlobInfo)
	}
	return p, nil
}

// committer commits images into storage from their manifests, for pulls
// and imports alike: it fetches the config, makes each layer (found in
// storage, or downloaded through the fetcher while its parent is being
// made, then unpacked and verified) and creates the image record, then
// names it. It owns the images table (an image pulled under two names at
// once is committed once) and the layers table (a layer shared by images
// pulled at once is unpacked once). A commit pins its layers (layerPins)
// from before it looks for them until the image record holds them, and
// after a failure deletes the layers it made that nothing else uses. Its
// fields are set once; each table has its own lock.
type committer struct {
	images  *storage.ImageStore
	layers  *storage.LayerStore
	blobs   *fetcher
	pins    *layerPins
	metrics *metrics

	imageWork *group[storage.ImageID, struct{}]
	layerWork *group[storage.LayerID, struct{}]
	step      stepHook
}

// newCommitter returns a committer whose shared work runs on base and
// joins wg.
func newCommitter(base context.Context, wg *sync.WaitGroup, store *storage.Store, blobs *fetcher, pins *layerPins, m *metrics) *committer {
	return &committer{
		images: store.Images(), layers: store.Layers(), blobs: blobs, pins: pins, metrics: m,
		imageWork: newGroup[storage.ImageID, struct{}](base, wg, false, nil),
		layerWork: newGroup[storage.LayerID, struct{}](base, wg, false, nil),
	}
}

// commitAndName makes sure the image is in storage and gives it names
// and the manifests it was pulled by. If the image is removed between the
// two steps, it is committed again.
func (s *committer) commitAndName(ctx context.Context, p *plan, names []string, manifests map[digest.Digest][]byte) error {
	for attempt := 0; ; attempt++ {
		if err := s.ensureImage(ctx, p); err != nil {
			return err
		}
		err := s.record(p.id, names, manifests)
		if err == nil {
			return s.step.after("pull-record")
		}
		if !errdefs.IsNotFound(err) || attempt > 0 {
			return err
		}
		log.FromContext(ctx).WithField("id", p.id).Info("image removed while being pulled; committing it again")
	}
}

// record adds names and manifests to a committed image.
func (s *committer) record(id storage.ImageID, names []string, manifests map[digest.Digest][]byte) error {
	img, err := s.images.Get(string(id))
	if err != nil {
		return err
	}
	for d, blob := range manifests {
		key := storage.ManifestKeyFor(d)
		if _, ok := img.BigDataSizes[key]; ok {
			continue
		}
		if err := s.images.SetBigData(id, key, blob, d); err != nil {
			return err
		}
	}
	return s.images.AddNames(id, names)
}

// ensureImage joins (or starts) the commit of p's image. A joined commit
// that failed at another source is retried once from p's.
func (s *committer) ensureImage(ctx context.Context, p *plan) error {
	for attempt := 0; ; attempt++ {
		p.src.acquire()
		c, started := s.imageWork.join(ctx, p.id, func(fctx context.Context) (struct{}, error) {
			defer p.src.release()
			return struct{}{}, s.commitImage(fctx, p)
		})
		if !started {
			p.src.release()
		}
		wctx, span := tracing.Start(ctx, "image.commit.wait", attribute.String("noded.image", string(p.id)), tracing.Coalesced(!started))
		_, err := c.wait(wctx)
		tracing.End(span, err)
		c.release()
		var se *sourcedError
		if err != nil && !started && attempt == 0 && ctx.Err() == nil && errors.As(err, &se) && se.key != p.src.key {
			continue
		}
		return err
	}
}

// commitImage is the shared work of committing one image: fetch its
// config, make sure each layer is in storage (joining layer work in
// flight), then create the image record. On failure the layers it made
// that nothing else uses are deleted again.
func (s *committer) commitImage(ctx context.Context, p *plan) error {
	if _, err := s.images.Get(string(p.id)); err == nil {
		s.metrics.layersReused.Add(float64(len(p.layers)))
		s.metrics.blobsSkipped.WithLabelValues("present").Add(float64(len(p.layers) + 1))
		return nil
	}
	// Download priorities: the config, then the layers bottom up.
	prio := s.blobs.priorities(len(p.layers) + 1)
	configBlob, cfg, err := s.readConfig(ctx, p, prio)
	if err != nil {
		return err
	}
	diffIDs := cfg.RootFS.DiffIDs
	if cfg.RootFS.Type != "layers" || len(diffIDs) != len(p.layers) {
		return errdefs.InvalidArgument("image %s: config lists %d layers (rootfs type %q), the manifest %d", p.id, len(diffIDs), cfg.RootFS.Type, len(p.layers))
	}
	ids := storage.LayerIDs(diffIDs)
	s.pins.pin(ids)
	calls := make([]*call[storage.LayerID, struct{}], len(ids))
	for i := range ids {
		var parent *call[storage.LayerID, struct{}]
		var parentID storage.LayerID
		if i > 0 {
			parent, parentID = calls[i-1], ids[i-1]
		}
		calls[i], _ = s.layerWork.join(ctx, ids[i], s.makeLayer(p, ids[i], parentID, parent, diffIDs[i], p.layers[i], prio+1+uint64(i)))
	}
	// Wait for every layer, even after a failure, so that nothing is
	// still being unpacked when the failure is cleaned up.
	var firstErr error
	for _, c := range calls {
		if _, err := c.wait(ctx); err != nil && firstErr == nil {
			firstErr = err
		}
		c.release()
	}
	if firstErr == nil {
		firstErr = s.createImage(p, ids, configBlob, cfg)
	}
	if firstErr == nil {
		firstErr = s.step.after("pull-image")
	}
	s.pins.unpin(ids, firstErr != nil)
	return firstErr
}

func (s *committer) createImage(p *plan, ids []storage.LayerID, configBlob []byte, cfg *ocispec.Image) error {
	var top storage.LayerID
	if len(ids) > 0 {
		top = ids[len(ids)-1]
	}
	created := time.Now().UTC()
	if cfg.Created != nil {
		created = *cfg.Created
	}
	_, err := s.images.Create(p.id, top, storage.CreateImageOptions{
		Created: created,
		Digest:  p.manifestDigest,
		BigData: []storage.BigData{
			{Key: storage.ManifestKey, Data: p.manifest, Digest: p.manifestDigest},
			{Key: storage.ManifestKeyFor(p.manifestDigest), Data: p.manifest, Digest: p.manifestDigest},
			{Key: storage.ConfigKey(p.id), Data: configBlob},
		},
	})
	if errdefs.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// readConfig fetches (once per concurrent group) and parses the config.
func (s *committer) readConfig(ctx context.Context, p *plan, prio uint64) ([]byte, *ocispec.Image, error) {
	if p.config.Size > maxConfigSize {
		return nil, nil, errdefs.InvalidArgument("image config %s is %d bytes, more than %d", p.config.Digest, p.config.Size, maxConfigSize)
	}
	b, release, err := s.blobs.fetchBlob(ctx, p.src, p.config, prio, false)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	data, err := os.ReadFile(b.path)
	if err != nil {
		return nil, nil, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, nil, errdefs.InvalidArgument("image config %s: %v", p.config.Digest, err)
	}
	return data, &cfg, nil
}

// makeLayer returns the shared work of making one layer: nothing if it is
// in storage, else download its blob and unpack it as the download goes,
// into a staging directory, side by side with the other layers of the
// image; then, once its parent is in storage, commit it on the parent.
// Layers commit bottom up; only the unpacking runs in parallel (the
// number of downloads in flight bounds it: an unpack follows its
// download). Without staging (a driver other than overlay) the unpack
// waits for the parent, as storage's Put needs it.
func (s *committer) makeLayer(p *plan, id, parentID storage.LayerID, parent *call[storage.LayerID, struct{}], diffID digest.Digest, info types.BlobInfo, prio uint64) func(context.Context) (struct{}, error) {
	return func(ctx context.Context) (struct{}, error) {
		if s.layers.Exists(id) {
			s.metrics.layersReused.Inc()
			s.metrics.blobsSkipped.WithLabelValues("present").Inc()
			return struct{}{}, nil
		}
		// A failed parent stops this layer's download and unpack.
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		if parent != nil {
			// Ends with this work at the latest (the deferred cancel).
			go func() {
				select {
				case <-parent.done:
					if _, err := parent.wait(ctx); err != nil {
						cancel(err)
					}
				case <-ctx.Done():
				}
			}()
		}
		// Follow the download: unpacking starts with its first bytes.
		b, release, err := s.blobs.fetchBlob(ctx, p.src, info, prio, true)
		if err != nil {
			return struct{}{}, s.parentErr(ctx, parent, err)
		}
		defer release()
		uctx, span := tracing.Start(ctx, "image.layer.unpack", attribute.String("noded.layer", string(id)), attribute.String("noded.digest", info.Digest.String()))
		err = s.applyLayer(uctx, id, parentID, parent, diffID, info, b)
		tracing.End(span, err)
		if err != nil {
			return struct{}{}, s.parentErr(ctx, parent, err)
		}
		s.metrics.layersUnpacked.Inc()
		return struct{}{}, nil
	}
}

// parentErr reports a layer's failure: its parent's error if the parent
// failed (the cause of this layer's cancellation), else err.
func (s *committer) parentErr(ctx context.Context, parent *call[storage.LayerID, struct{}], err error) error {
	if parent == nil {
		return err
	}
	select {
	case <-parent.done:
		if _, pErr := parent.wait(ctx); pErr != nil {
			return pErr
		}
	default:
	}
	return err
}

// applyLayer unpacks a blob (possibly still downloading) and makes it
// layer id on parent once the parent call is done. The layer is completed
// only if the blob matches its digest and the uncompressed content the
// DiffID the config lists: either mismatch surfaces as a read error at the
// end of the stream, which aborts it.
func (s *committer) applyLayer(ctx context.Context, id, parentID storage.LayerID, parent *call[storage.LayerID, struct{}], diffID digest.Digest, info types.BlobInfo, b *blobFile) error {
	if err := diffID.Validate(); err != nil {
		return errdefs.InvalidArgument("layer %s: DiffID %q: %v", info.Digest, diffID, err)
	}
	f, err := b.open()
	if err != nil {
		return err
	}
	defer f.Close()
	uncompressed, err := archive.DecompressStream(f)
	if err != nil {
		return fmt.Errorf("layer %s: %w", info.Digest, err)
	}
	defer uncompressed.Close()
	check := newEntryCheck(info.Digest)
	defer func() { _ = check.close() }() // after the verifier's goroutine, which writes to it, ends
	v := &diffReader{ctx: ctx, r: uncompressed, verifier: newAsyncVerifier(diffID, check), check: check, blob: info.Digest, diffID: diffID}
	defer v.verifier.stop()
	start := time.Now()
	opts := storage.PutLayerOptions{CompressedDigest: info.Digest, CompressedSize: info.Size, DiffID: diffID}
	waitParent := func() error {
		if parent == nil {
			return nil
		}
		_, err := parent.wait(ctx)
		return err
	}
	staged, err := s.layers.Stage(v, opts)
	if errors.Is(err, storage.ErrStagingUnsupported) {
		if err := waitParent(); err != nil {
			return err
		}
		_, err = s.layers.Put(id, parentID, v, opts)
	}
	if err != nil {
		return s.unpackErr(ctx, b, v, err)
	}
	if err := v.drain(); err != nil {
		if bErr := b.result(ctx); bErr != nil {
			err = bErr
		}
		if staged != nil {
			s.discard(ctx, staged)
		} else if delErr := s.layers.Delete(id); delErr != nil {
			log.FromContext(ctx).WithError(delErr).WithField("layer", id).Warn("removing a layer that failed verification")
		}
		return err
	}
	if staged != nil {
		if err := s.step.after("pull-staged"); err != nil {
			s.discard(ctx, staged)
			return err
		}
		if err := waitParent(); err != nil {
			s.discard(ctx, staged)
			return err
		}
		if _, err := s.layers.Commit(id, parentID, staged); err != nil {
			return err
		}
	}
	log.FromContext(ctx).WithFields(map[string]any{"layer": id, "blob": info.Digest, "duration": time.Since(start)}).Debug("layer unpacked")
	return s.step.after("pull-layer")
}

// unpackErr picks the root cause of a failed unpack.
func (s *committer) unpackErr(ctx context.Context, b *blobFile, v *diffReader, err error) error {
	// A download that failed (say, corrupt content) is the root cause
	// of whatever the decompressor or unpacker made of it.
	if bErr := b.result(ctx); bErr != nil {
		return bErr
	}
	if v.err != nil {
		return v.err
	}
	// An entry noded refuses that storage failed on before the check's
	// verdict reached a read: the verdict says which.
	if rErr := v.refused(); rErr != nil {
		return rErr
	}
	return err
}

func (s *committer) discard(ctx context.Context, st *storage.StagedLayer) {
	if err := s.layers.Discard(st); err != nil {
		log.FromContext(ctx).WithError(err).Warn("removing a staged layer")
	}
}

// diffReader verifies the uncompressed stream as storage reads it: at the
// end of the stream it answers an error instead of io.EOF if the content
// does not match the DiffID or has an entry the check refuses, so the
// layer is never completed. It also stops the unpack when ctx ends, or
// as soon as the check has refused an entry.
type diffReader struct {
	ctx      context.Context
	r        io.Reader
	verifier *asyncVerifier
	check    *entryCheck
	blob     digest.Digest
	diffID   digest.Digest
	eof      bool
	err      error
}

func (d *diffReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if err := d.ctx.Err(); err != nil {
		d.err = err
		return 0, err
	}
	if err := d.check.refused(); err != nil {
		d.err = err
		return 0, err
	}
	n, err := d.r.Read(p)
	d.verifier.write(p[:n])
	if err == io.EOF {
		d.eof = true
		if !d.verifier.verified() {
			d.err = errdefs.FailedPrecondition("layer %s: uncompressed content does not match DiffID %s from the image config: %w", d.blob, d.diffID, errDigestMismatch)
			return n, d.err
		}
		if d.err = d.check.close(); d.err != nil {
			return n, d.err
		}
	} else if err != nil {
		d.err = err
	}
	return n, err
}

// refused hands the check everything storage has read and returns its
// verdict.
func (d *diffReader) refused() error {
	d.verifier.flush()
	return d.check.close()
}

// drain reads what the unpacker left (tar padding) and reports a mismatch.
func (d *diffReader) drain() error {
	if d.err != nil {
		return d.err
	}
	if !d.eof {
		if _, err := io.Copy(io.Discard, d); err != nil {
			return err
		}
	}
	return d.err
}
