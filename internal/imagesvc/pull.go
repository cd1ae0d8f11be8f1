package imagesvc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/attribute"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/storage"
	"github.com/noded-dev/noded/internal/tracing"
)

// Auth are the credentials of a pull, as the CRI's AuthConfig carries
// them. They are sent only to the registry of the image being pulled,
// never to its mirrors.
type Auth struct {
	Username string
	Password string
	// Auth is base64("username:password"), as in a docker config.json.
	Auth string
	// IdentityToken is an OAuth2 refresh token exchanged for access tokens.
	IdentityToken string
	// RegistryToken is a bearer token sent to the registry as is.
	RegistryToken string
}

// resolve turns the credentials into containers/image's form and a
// fingerprint that tells apart pulls with different credentials (pulls
// with different credentials never share a manifest fetch).
func (a Auth) resolve() (*types.DockerAuthConfig, string, string, error) {
	user, pass := a.Username, a.Password
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return nil, "", "", errdefs.InvalidArgument("auth: not base64: %v", err)
		}
		var ok bool
		if user, pass, ok = strings.Cut(string(raw), ":"); !ok {
			return nil, "", "", errdefs.InvalidArgument("auth: not \"username:password\"")
		}
		pass = strings.Trim(pass, "\x00")
	}
	cfg := &types.DockerAuthConfig{Username: user, Password: pass, IdentityToken: a.IdentityToken}
	h := sha256.New()
	for _, f := range []string{user, pass, a.IdentityToken, a.RegistryToken} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return cfg, a.RegistryToken, hex.EncodeToString(h.Sum(nil)), nil
}

// requestKey identifies one concurrent group of pulls: the same reference
// with the same credentials.
type requestKey struct {
	ref  string
	auth string
}

// puller is the registry side of a pull: it resolves a reference to its
// candidates, fetches and verifies the manifest (picking this node's
// platform from a manifest list), applies the signature policy and hands
// the image to the committer, then names it. It owns the requests table
// (one manifest fetch per reference and credentials among concurrent
// pulls) and the PullImage metrics (in flight, duration). Its fields are
// set once; the table has its own lock.
type puller struct {
	registries      *registries
	policy          func() (*signature.Policy, error)
	commit          *committer
	images          *storage.ImageStore
	progressTimeout atomic.Int64 // a time.Duration; a reload changes it
	retryDelays     []time.Duration
	metrics         *metrics

	requests *group[requestKey, storage.ImageID]
	// idle returns the pulls' memory to the kernel once they are over.
	idle Trimmer
}

type pullerOptions struct {
	registries      *registries
	policy          func() (*signature.Policy, error)
	commit          *committer
	store           *storage.ImageStore
	progressTimeout time.Duration
	retryDelays     []time.Duration
	metrics         *metrics
	trim            Trimmer
}

// Trimmer is told of pieces of work; it releases memory once a burst of
// them is over (internal/memtrim).
type Trimmer interface {
	Begin() (end func())
}

// newPuller returns a puller whose shared work runs on base and joins wg.
func newPuller(base context.Context, wg *sync.WaitGroup, o pullerOptions) *puller {
	p := &puller{
		registries: o.registries, policy: o.policy, commit: o.commit, images: o.store,
		retryDelays: o.retryDelays, metrics: o.metrics,
		requests: newGroup[requestKey, storage.ImageID](base, wg, false, nil),
		idle:     o.trim,
	}
	p.progressTimeout.Store(int64(o.progressTimeout))
	return p
}

// Pull pulls ref and returns the image's ID (see Service.Pull).
func (s *puller) Pull(ctx context.Context, ref string, auth Auth) (storage.ImageID, error) {
	start := time.Now()
	s.metrics.inFlight.Inc()
	defer s.metrics.inFlight.Dec()
	defer s.idle.Begin()()
	id, err := s.pull(ctx, ref, auth)
	result := "success"
	if err != nil {
		result = "error"
	}
	s.metrics.duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return id, err
}

func (s *puller) pull(ctx context.Context, ref string, auth Auth) (storage.ImageID, error) {
	s.registries.watch.check()
	candidates, err := s.registries.pullCandidates(ref)
	if err != nil {
		return "", err
	}
	dockerAuth, bearer, fingerprint, err := auth.resolve()
	if err != nil {
		return "", err
	}
	var errs []error
	for _, named := range candidates {
		key := requestKey{ref: named.String(), auth: fingerprint}
		rctx, span := tracing.Start(ctx, "image.pull", attribute.String("noded.image", named.String()))
		id, release, started, err := s.requests.do(rctx, key, func(fctx context.Context) (storage.ImageID, error) {
			return s.pullReference(fctx, named, dockerAuth, bearer, fingerprint)
		})
		span.SetAttributes(tracing.Coalesced(!started))
		tracing.End(span, err)
		release()
		if err == nil {
			log.FromContext(ctx).WithFields(map[string]any{"image": named.String(), "id": id.String()}).Info("image pulled")
			return id, nil
		}
		if ctx.Err() != nil {
			return "", err
		}
		errs = append(errs, err)
	}
	return "", joinPullErrors(ref, candidates, errs)
}

// joinPullErrors reports the failure of every candidate of a short name;
// the class is that of the first failure other than NotFound.
func joinPullErrors(ref string, candidates []reference.Named, errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	chosen := errs[0]
	for _, err := range errs {
		if !errdefs.IsNotFound(err) {
			chosen = err
			break
		}
	}
	parts := make([]string, len(errs))
	for i, err := range errs {
		parts[i] = fmt.Sprintf("[%s: %v]", candidates[i], err)
	}
	return &joinedError{msg: fmt.Sprintf("pulling %q: every candidate failed: %s", ref, strings.Join(parts, " ")), cause: chosen}
}

type joinedError struct {
	msg   string
	cause error
}

func (e *joinedError) Error() string { return e.msg }
func (e *joinedError) Unwrap() error { return e.cause }

// pullReference is the shared work of one concurrent group: resolve and
// fetch the manifest, check the signature policy, commit the image (shared
// with every group pulling the same image) and give it this reference's
// names.
func (s *puller) pullReference(ctx context.Context, named reference.Named, auth *types.DockerAuthConfig, bearer, fingerprint string) (storage.ImageID, error) {
	registry := reference.Domain(named)
	// An image pulled by digest under this very name cannot have changed.
	if _, ok := named.(reference.Canonical); ok {
		if img, err := s.images.Get(named.String()); err == nil {
			return img.ID, nil
		}
	}
	sys := s.registries.systemContext(auth, bearer)
	res, err := s.resolveManifest(ctx, named, sys, fingerprint)
	if err != nil {
		return "", err
	}
	defer res.src.release()
	p, err := planFromManifest(res.manifest, res.mime, res.digest, res.src)
	if err != nil {
		return "", fmt.Errorf("pulling %s: %w", named, err)
	}
	names := []string{}
	if isTagged(named) {
		names = append(names, named.String())
	}
	if digested, err := reference.WithDigest(reference.TrimNamed(named), res.topDigest); err == nil {
		names = append(names, digested.String())
	}
	manifests := map[digest.Digest][]byte{res.digest: res.manifest, res.topDigest: res.topManifest}
	if err := s.commit.commitAndName(ctx, p, names, manifests); err != nil {
		return "", fmt.Errorf("pulling %s from registry %s: %w", named, registry, err)
	}
	return p.id, nil
}

// resolved is a fetched and verified manifest for this node's platform.
type resolved struct {
	src         *blobSource
	manifest    []byte
	mime        string
	digest      digest.Digest
	topManifest []byte // the manifest list, or the manifest itself
	topDigest   digest.Digest
}

// resolveManifest opens the image at the registry (mirrors first, per
// registries.conf), checks the signature policy and picks this node's
// platform from a manifest list. The manifest phase as a whole is bounded
// by the progress timeout.
func (s *puller) resolveManifest(ctx context.Context, named reference.Named, sys *types.SystemContext, fingerprint string) (_ *resolved, retErr error) {
	registry := reference.Domain(named)
	what := "resolving " + named.String()
	if timeout := time.Duration(s.progressTimeout.Load()); timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, errNoProgress)
		defer cancel()
	}
	dref, err := docker.NewReference(named)
	if err != nil {
		return nil, errdefs.InvalidArgument("%s: %v", what, err)
	}
	var src types.ImageSource
	_, err = retry(ctx, s.retryDelays, log.FromContext(ctx), "registry request", func() error {
		var err error
		src, err = dref.NewImageSource(ctx, sys)
		return err
	})
	if err != nil {
		return nil, registryError(causeOr(ctx, err), registry, what)
	}
	bs := newBlobSource(registry, "registry "+registry, named.Name()+"\x00"+fingerprint,
		func(ctx context.Context, info types.BlobInfo) (io.ReadCloser, int64, error) {
			return src.GetBlob(ctx, info, none.NoCache)
		}, func() { _ = src.Close() })
	defer func() {
		if retErr != nil {
			bs.release()
		}
	}()

	top := image.UnparsedInstance(src, nil)
	if err := s.checkPolicy(ctx, top, named); err != nil {
		return nil, err
	}
	topBlob, topMIME, err := top.Manifest(ctx) // fetched by NewImageSource, verified against a digest reference
	if err != nil {
		return nil, registryError(causeOr(ctx, err), registry, what)
	}
	topDigest, err := manifest.Digest(topBlob)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	r := &resolved{src: bs, manifest: topBlob, mime: topMIME, digest: topDigest, topManifest: topBlob, topDigest: topDigest}
	if !manifest.MIMETypeIsMultiImage(manifest.NormalizedMIMEType(topMIME)) {
		return r, nil
	}
	list, err := manifest.ListFromBlob(topBlob, manifest.NormalizedMIMEType(topMIME))
	if err != nil {
		return nil, errdefs.InvalidArgument("%s: manifest list: %v", what, err)
	}
	instance, err := list.ChooseInstance(sys)
	if err != nil {
		return nil, errdefs.NotFound("%s: no image for this node's platform (linux/%s) in the manifest list: %v", what, sys.ArchitectureChoice, err)
	}
	_, err = retry(ctx, s.retryDelays, log.FromContext(ctx), "registry request", func() error {
		var err error
		r.manifest, r.mime, err = image.UnparsedInstance(src, &instance).Manifest(ctx) // verified against instance
		return err
	})
	if err != nil {
		return nil, registryError(causeOr(ctx, err), registry, what+"@"+instance.String())
	}
	r.digest = instance
	return r, nil
}

// checkPolicy applies the signature policy to the image as pulled.
func (s *puller) checkPolicy(ctx context.Context, img types.UnparsedImage, named reference.Named) error {
	policy, err := s.policy()
	if err != nil {
		return errdefs.FailedPrecondition("%v", err)
	}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return errdefs.FailedPrecondition("signature policy: %v", err)
	}
	defer func() { _ = pc.Destroy() }()
	allowed, err := pc.IsRunningImageAllowed(ctx, img)
	if !allowed || err != nil {
		if err == nil {
			err = errors.New("not allowed")
		}
		if errdefs.IsContextError(err) || httpStatus(err) != 0 {
			return registryError(causeOr(ctx, err), reference.Domain(named), "reading signatures of "+named.String())
		}
		return errdefs.PermissionDenied("image %s rejected by the signature policy: %v", named, err)
	}
	return nil
}
