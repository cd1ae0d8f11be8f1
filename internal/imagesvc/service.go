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
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

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
	// default ($CONTAINERS_REGISTRIES_CONF or /etc/containers/...).
	RegistriesConf string
	// SignaturePolicy is a containers-policy.json(5) file. Empty:
	// /etc/containers/policy.json when it exists, else accept anything.
	SignaturePolicy string
	// PauseImage is reported as pinned (the kubelet never removes it).
	PauseImage string
	// ProgressTimeout fails a pull that receives no bytes for this long;
	// 0 disables the check.
	ProgressTimeout time.Duration
	// MaxParallelDownloads bounds blob downloads across all pulls.
	MaxParallelDownloads int
	// UserAgent is sent to registries.
	UserAgent string
	Log       *logrus.Entry
}

// Service is the image service. It is safe for concurrent use.
type Service struct {
	opts    Options
	store   *storage.Store
	log     *logrus.Entry
	tmpDir  string
	pause   string // normalized pause image name
	policy  func() (*signature.Policy, error)
	regConf *regConfWatch
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	requests *group[requestKey, storage.ImageID]
	images   *group[storage.ImageID, struct{}]
	layers   *group[storage.LayerID, struct{}]
	blobs    *group[string, *blobFile]
	download *slots
	// seq numbers blobs for download priority (see slots).
	seq atomic.Uint64

	// gcMu orders layer deletion against pulls: a pull pins the layers of
	// its image before it looks for them and unpins them once the image
	// record holds them, and a removal never deletes a pinned layer.
	gcMu        sync.Mutex
	pins        map[storage.LayerID]int
	pinsChanged chan struct{}

	cacheMu sync.Mutex
	cache   map[storage.ImageID]*imageFacts // immutable per-image facts

	// retryDelays are the pauses before the second and later attempts at
	// a registry request that failed transiently.
	retryDelays []time.Duration
}

// New returns a Service on an opened store. It removes what an earlier
// noded left half done (see storage.GarbageCollect), so it must be the
// store's only user at that moment.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("imagesvc: no store")
	}
	if o.Log == nil {
		o.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	if o.MaxParallelDownloads <= 0 {
		o.MaxParallelDownloads = DefaultMaxParallelDownloads
	}
	if o.UserAgent == "" {
		o.UserAgent = "noded"
	}
	if err := o.Store.GarbageCollect(); err != nil {
		return nil, err
	}
	tmp, err := o.Store.TempDir("pull")
	if err != nil {
		return nil, err
	}
	s := &Service{
		opts: o, store: o.Store, log: o.Log, tmpDir: tmp,
		metrics:     newMetrics(),
		download:    newSlots(o.MaxParallelDownloads),
		pins:        map[storage.LayerID]int{},
		pinsChanged: make(chan struct{}),
		cache:       map[storage.ImageID]*imageFacts{},
		retryDelays: []time.Duration{500 * time.Millisecond, 2 * time.Second},
	}
	s.regConf = newRegConfWatch(o.RegistriesConf)
	s.regConf.check()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.requests = newGroup[requestKey, storage.ImageID](s.ctx, &s.wg, false, nil)
	s.images = newGroup[storage.ImageID, struct{}](s.ctx, &s.wg, false, nil)
	s.layers = newGroup[storage.LayerID, struct{}](s.ctx, &s.wg, false, nil)
	s.blobs = newGroup[string, *blobFile](s.ctx, &s.wg, true, func(b *blobFile) { b.remove() })

	if o.PauseImage != "" {
		if named, err := reference.ParseNormalizedNamed(o.PauseImage); err == nil {
			s.pause = reference.TagNameOnly(named).String()
		} else {
			return nil, fmt.Errorf("pause image %q: %w", o.PauseImage, err)
		}
	}
	if s.policy, err = policyLoader(o.SignaturePolicy, o.Log); err != nil {
		return nil, err
	}
	return s, nil
}

// Close cancels pulls in flight and waits for them to stop. The store is
// the caller's to close afterwards.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// policyLoader returns how each pull gets its signature policy. The file
// is read for every pull, so an edited policy applies without a restart.
func policyLoader(path string, log *logrus.Entry) (func() (*signature.Policy, error), error) {
	if path == "" {
		if _, err := os.Stat(defaultPolicyPath); err == nil {
			path = defaultPolicyPath
		}
	}
	if path == "" {
		log.Warnf("no signature policy (%s does not exist and signature-policy is not set): accepting every image", defaultPolicyPath)
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

// systemContext is the containers/image configuration of one pull.
func (s *Service) systemContext(auth *types.DockerAuthConfig, bearer string) *types.SystemContext {
	mode := types.ShortNameModeDisabled // a daemon never prompts
	sys := &types.SystemContext{
		ShortNameMode:           &mode,
		DockerRegistryUserAgent: s.opts.UserAgent,
		OSChoice:                "linux",
		ArchitectureChoice:      runtime.GOARCH,
		BigFilesTemporaryDir:    s.tmpDir,
		// Non-nil: only the request's credentials, never a credentials
		// file of the host's root user.
		DockerAuthConfig:          auth,
		DockerBearerRegistryToken: bearer,
	}
	if sys.DockerAuthConfig == nil {
		sys.DockerAuthConfig = &types.DockerAuthConfig{}
	}
	if s.opts.RegistriesConf != "" {
		sys.SystemRegistriesConfPath = s.opts.RegistriesConf
		sys.SystemRegistriesConfDirPath = s.opts.RegistriesConf + ".d"
	}
	return sys
}

// tempFile creates a temporary file for a download.
func (s *Service) tempFile() (*os.File, error) {
	f, err := os.CreateTemp(s.tmpDir, "blob-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file in %s: %w", filepath.Dir(s.tmpDir), err)
	}
	return f, nil
}
