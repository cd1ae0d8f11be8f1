// Package imagesvc is noded's image service: it pulls images from
// registries into internal/storage, lists, inspects and removes them, and
// accounts for the image filesystem.
//
// Pulls use containers/image only as a source (the docker transport:
// registries.conf with mirrors and insecure registries, credentials,
// short names, signature policy, manifest lists) and commit into
// containers/storage themselves, so that concurrent pulls can share work
// at every level. Four in-flight tables (see flight.go) join concurrent
// requests:
//
//   - requests, keyed by the resolved reference and the credentials: a
//     manifest is resolved and fetched once per concurrent group, and
//     pulls with different credentials never share a manifest fetch;
//   - images, keyed by the image ID (config digest): an image pulled under
//     two names at once is committed once, and its config fetched once;
//   - layers, keyed by the layer ID (ChainID): a layer shared by images
//     pulled at once is unpacked once;
//   - blobs, keyed by the blob digest: each blob is downloaded once, to a
//     temporary file on the graph root's filesystem.
//
// Unpacking follows a download as it streams in (blobFile), and layers
// are unpacked bottom up as soon as their parent is in storage; downloads
// get their slots (max-parallel-downloads) bottom layer first. Nothing
// unverified is ever committed: both the blob digest and the DiffID are
// checked at the end of the stream, and a mismatch fails the unpack
// before containers/storage completes the layer.
//
// Waiters wait with their own context; the work runs on the service's
// context. A caller that gives up (kubelet timeout, crictl ^C) leaves the
// pull running: others may be waiting, and when the kubelet retries it
// joins the running pull or finds the image. A pull nobody waits for still
// ends: when it completes, fails, or makes no progress for
// pull-progress-timeout. Only a download that no pull needs any more (its
// layer's parent failed) is cancelled. A failed pull deletes the layers it
// made that nothing else uses, so no partial image is left behind.
package imagesvc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/signature"

	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/memtrim"
	"github.com/noded-dev/noded/internal/storage"
)

// DefaultMaxParallelDownloads bounds concurrent blob downloads when
// Options.MaxParallelDownloads is 0.
const DefaultMaxParallelDownloads = 3

// defaultPolicyPath is where containers-policy.json(5) lives on a host
// that has one.
const defaultPolicyPath = "/etc/containers/policy.json"

// Options configure a Service.
type Options struct {
	Store *storage.Store
	// RegistriesConf is a containers-registries.conf(5) file; its drop-ins
	// are read from RegistriesConf + ".d". Empty: the containers/image
	// default (/etc/containers/...). $CONTAINERS_REGISTRIES_CONF is the
	// caller's to resolve into this field (noded's configuration does, in
	// internal/config), so that the file watched for changes is the file
	// read.
	RegistriesConf string
	// SignaturePolicy is a containers-policy.json(5) file. Empty:
	// /etc/containers/policy.json when it exists, else accept anything.
	SignaturePolicy string
	// PauseImage is reported as pinned (the kubelet never removes it).
	PauseImage string
	// PinnedImages are patterns (internal/imagesvc/pinned) of further
	// names reported as pinned.
	PinnedImages []string
	// ProgressTimeout fails a pull that receives no bytes for this long;
	// 0 disables the check.
	ProgressTimeout time.Duration
	// MaxParallelDownloads bounds blob downloads across all pulls.
	MaxParallelDownloads int
	// UserAgent is sent to registries.
	UserAgent string
	// Log is the service's logger, for work that outlives the request that
	// started it (shared pulls); nil discards. Lines about one request go
	// to the logger of its context (internal/log).
	Log *logrus.Entry

	// Trim is told of each pull as a piece of work, and returns the
	// memory of a burst of them to the kernel once it is over
	// (internal/memtrim). noded passes the trimmer its lifecycle calls
	// share, so that pulls and pod starts that overlap release once. Nil:
	// the service makes its own (and closes it with Close).
	Trim Trimmer

	// FailAfter is the step hook of crash tests (noded's failpoints
	// build): called after each step of a pull or removal ("pull-staged"
	// when a layer is unpacked, "pull-layer" when it is committed,
	// "pull-image", "pull-record", "remove-image"), its
	// error fails the operation there. Nil in production.
	FailAfter func(step string) error

	// retryDelays are the pauses before the second and later attempts at
	// a registry request that failed transiently (nil: the defaults; tests
	// shorten them).
	retryDelays []time.Duration
}

// Service is the image service the CRI and the runtime side call: a thin
// facade over the parts that do the work. It owns only the lifetime of
// shared work (every in-flight table runs its work on one context, which
// Close cancels before it waits for the work to end) and the metrics; the
// rest is owned by:
//
//   - puller (pull.go): the pull path on the registry side: resolving
//     references, manifests and the signature policy, and the requests
//     table;
//   - committer (commit.go, import.go): committing an image into storage
//     from a manifest, for pulls and imports alike: the images and layers
//     tables, configs and layer unpacking;
//   - fetcher (blobs.go): blob downloads: the blobs table, the download
//     slots, the temporary files and the progress watchdog;
//   - layerPins (pins.go): the order between layer deletion and pulls;
//   - catalog (images.go, local.go): the local images: lookup, list,
//     status, removal and the cache of per-image facts;
//   - registries (reference.go): registries.conf and the containers/image
//     configuration of a pull.
//
// Each part keeps its own lock, if it has one, and takes no other part's
// lock while holding it. It is safe for concurrent use.
type Service struct {
	store   *storage.Store
	metrics *metrics
	puller  *puller
	// ownTrim is the trimmer the service made (Options.Trim nil), closed
	// with it.
	ownTrim *memtrim.Trimmer
	commit  *committer
	catalog *catalog

	cancel context.CancelFunc // ends the shared work's context
	wg     sync.WaitGroup     // the shared work in flight
}

// New returns a Service on an opened store. It removes what an earlier
// noded left half done (see storage.GarbageCollect), so it must be the
// store's only user at that moment.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("imagesvc: no store")
	}
	o.Log = log.Or(o.Log)
	if o.MaxParallelDownloads <= 0 {
		o.MaxParallelDownloads = DefaultMaxParallelDownloads
	}
	if o.UserAgent == "" {
		o.UserAgent = "noded"
	}
	if o.retryDelays == nil {
		o.retryDelays = []time.Duration{500 * time.Millisecond, 2 * time.Second}
	}
	if err := o.Store.GarbageCollect(); err != nil {
		return nil, err
	}
	tmp, err := o.Store.TempDir("pull")
	if err != nil {
		return nil, err
	}
	names, err := newPinnedNames(o.PauseImage, o.PinnedImages)
	if err != nil {
		return nil, err
	}
	policy, err := policyLoader(o.SignaturePolicy, o.Log)
	if err != nil {
		return nil, err
	}
	s := &Service{store: o.Store, metrics: newMetrics()}
	// Shared work runs on base, which carries the service's logger: code
	// that logs through log.FromContext(ctx) names the request when a
	// request runs it and the component when shared work does.
	var base context.Context
	base, s.cancel = context.WithCancel(log.WithContext(context.Background(), o.Log))
	regs := newRegistries(o.RegistriesConf, o.UserAgent, tmp)
	pins := newLayerPins(o.Store, o.Log)
	blobs := newFetcher(base, &s.wg, fetcherOptions{
		tmpDir: tmp, parallel: o.MaxParallelDownloads, progressTimeout: o.ProgressTimeout,
		retryDelays: o.retryDelays, metrics: s.metrics,
	})
	s.commit = newCommitter(base, &s.wg, o.Store, blobs, pins, s.metrics)
	s.commit.step = o.FailAfter
	trim := o.Trim
	if trim == nil {
		s.ownTrim = memtrim.New()
		trim = s.ownTrim
	}
	s.puller = newPuller(base, &s.wg, pullerOptions{
		registries: regs, policy: policy, commit: s.commit, store: o.Store.Images(),
		progressTimeout: o.ProgressTimeout, retryDelays: o.retryDelays, metrics: s.metrics,
		trim: trim,
	})
	s.catalog = newCatalog(o.Store.Images(), regs, pins, names)
	s.catalog.step = o.FailAfter
	return s, nil
}

// Settings are the options a running Service takes again (a reload of
// noded's configuration); see Reconfigure.
type Settings struct {
	PauseImage           string
	PinnedImages         []string
	ProgressTimeout      time.Duration
	MaxParallelDownloads int
}

// Reconfigure applies s to the running service, all or nothing: an invalid
// pause image or pattern changes nothing. Pulls in flight keep the
// progress timeout they started with; the download slots grow at once, or
// shrink as downloads in flight end. registries.conf and the signature
// policy are read again at the next pull.
func (s *Service) Reconfigure(set Settings) error {
	names, err := newPinnedNames(set.PauseImage, set.PinnedImages)
	if err != nil {
		return err
	}
	if set.MaxParallelDownloads <= 0 {
		set.MaxParallelDownloads = DefaultMaxParallelDownloads
	}
	s.catalog.pinned.Store(names)
	s.puller.progressTimeout.Store(int64(set.ProgressTimeout))
	s.commit.blobs.progressTimeout.Store(int64(set.ProgressTimeout))
	s.commit.blobs.download.resize(set.MaxParallelDownloads)
	s.puller.registries.watch.invalidate()
	return nil
}

// stepHook marks the end of a step of a pull or a removal, where crash
// tests inject failures (Options.FailAfter); nil does nothing.
type stepHook func(step string) error

func (h stepHook) after(step string) error {
	if h == nil {
		return nil
	}
	return h(step)
}

// Close cancels pulls in flight and waits for them to stop. The store is
// the caller's to close afterwards.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
	if s.ownTrim != nil {
		s.ownTrim.Close()
	}
}

// Pull pulls ref (resolving a short name through registries.conf) and
// returns the image's ID. Concurrent pulls share their work; see the
// package documentation. If ctx ends first, Pull returns ctx's error and
// the pull goes on for the other waiters and for the next attempt.
func (s *Service) Pull(ctx context.Context, ref string, auth Auth) (storage.ImageID, error) {
	return s.puller.Pull(ctx, ref, auth)
}

// Import commits an image whose manifest and blobs (config and layers,
// compressed or not) the caller holds in memory, such as the built-in
// pause image, and names it name. It goes through the same commit as a
// pull (layers shared, digests verified) without any network access.
func (s *Service) Import(ctx context.Context, name string, manifestBlob []byte, blobs map[digest.Digest][]byte) (storage.ImageID, error) {
	return s.commit.Import(ctx, name, manifestBlob, blobs)
}

// Status returns the image ref names, or an errdefs NotFound error.
func (s *Service) Status(ctx context.Context, ref string, verbose bool) (*Image, error) {
	return s.catalog.Status(ctx, ref, verbose)
}

// List returns every image, or only the one filter names ("" for all).
func (s *Service) List(ctx context.Context, filter string) ([]*Image, error) {
	return s.catalog.List(ctx, filter)
}

// Stream is List one image at a time (StreamImages); an error ends it.
func (s *Service) Stream(ctx context.Context, filter string) iter.Seq2[*Image, error] {
	return s.catalog.Stream(ctx, filter)
}

// Remove removes what ref names. A tag is removed from its image, and the
// image goes with its last tag; an ID or a digest removes the image with
// all its names. Removing an image that is not there succeeds. An image
// that a container uses is an errdefs FailedPrecondition error.
func (s *Service) Remove(ctx context.Context, ref string) error {
	return s.catalog.Remove(ctx, ref)
}

// Resolve finds a stored image by ID, name, short name or digest, the way
// ImageStatus does; a missing image is NotFound (the kubelet pulls first).
func (s *Service) Resolve(ctx context.Context, ref string) (LocalImage, error) {
	return s.catalog.Resolve(ctx, ref)
}

// FsInfo reports the image and container filesystems' usage.
func (s *Service) FsInfo(_ context.Context) (images, containers storage.FsUsage, err error) {
	return s.store.FsInfo()
}

// Store is the image store, which also holds containers' root filesystems.
func (s *Service) Store() *storage.Store { return s.store }

// policyLoader returns how each pull gets its signature policy. The file
// is read for every pull, so an edited policy applies without a restart.
func policyLoader(path string, logger *logrus.Entry) (func() (*signature.Policy, error), error) {
	if path == "" {
		if _, err := os.Stat(defaultPolicyPath); err == nil {
			path = defaultPolicyPath
		}
	}
	if path == "" {
		logger.Warnf("no signature policy (%s does not exist and signature-policy is not set): accepting every image", defaultPolicyPath)
		return func() (*signature.Policy, error) {
			return &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}, nil
		}, nil
	}
	if _, err := signature.NewPolicyFromFile(path); err != nil {
		return nil, fmt.Errorf("signature policy %s: %w", path, err)
	}
	return func() (*signature.Policy, error) {
		p, err := signature.NewPolicyFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("signature policy %s: %w", path, err)
		}
		return p, nil
	}, nil
}
