package imagesvc

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/pause"
	"github.com/noded-dev/noded/internal/storage"
)

// PauseOptions say which image pod sandboxes run.
type PauseOptions struct {
	// Ref is the pause image, as configured (pause-image).
	Ref string
	// Builtin says that Ref names noded's built-in image: it is made in
	// storage from the pause binary at BinaryPath (internal/pause), so a
	// node without registry access runs pods, instead of being pulled.
	Builtin    bool
	BinaryPath string
	// RootfsDir is where the built-in image's root filesystem is written
	// (internal/pause.WriteRootfs) for the pod sandboxes to share,
	// read-only; empty: each sandbox runs on a storage container of its
	// own, as with a configured image.
	RootfsDir string
}

// PauseImage is the pause image as a pod sandbox needs it.
type PauseImage struct {
	LocalImage
	// SelfConfined says that the image's program installs its own seccomp
	// filter (the built-in noded-pause does), so its container needs no
	// runtime default profile.
	SelfConfined bool
	// Rootfs is the image's shared, read-only root filesystem (the
	// built-in image with PauseOptions.RootfsDir), or "".
	Rootfs string
}

// pauseImages is what PauseImages needs from the image service.
type pauseImages interface {
	Resolve(ctx context.Context, ref string) (LocalImage, error)
	Pull(ctx context.Context, ref string, auth Auth) (storage.ImageID, error)
	Import(ctx context.Context, name string, manifest []byte, blobs map[digest.Digest][]byte) (storage.ImageID, error)
}

// PauseImages provides the pause image, making it on first use: the
// built-in one is imported from the bundled pause binary, a configured one
// is pulled, as containerd does with its sandbox image.
type PauseImages struct {
	images pauseImages
	opts   PauseOptions

	// mu makes concurrent first pods make the image once.
	mu sync.Mutex

	buildOnce sync.Once
	built     *pause.Image // the built-in image of BinaryPath
	binary    []byte
	buildErr  error

	// rootfsMu serialises writing the shared root filesystem; rootfsDone
	// is set once it is written.
	rootfsMu   sync.Mutex
	rootfsDone bool
}

// PauseImages returns the provider of the pause image o names.
func (s *Service) PauseImages(o PauseOptions) *PauseImages { return newPauseImages(s, o) }

func newPauseImages(images pauseImages, o PauseOptions) *PauseImages {
	return &PauseImages{images: images, opts: o}
}

// Get returns the pause image, importing or pulling it first if it is not
// in storage (or, for the built-in name, holds another noded's image).
func (p *PauseImages) Get(ctx context.Context) (PauseImage, error) {
	if img, ok, err := p.lookup(ctx); ok || err != nil {
		return img, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if img, ok, err := p.lookup(ctx); ok || err != nil {
		return img, err
	}
	if p.opts.Builtin {
		if err := p.importBuiltin(ctx); err != nil {
			return PauseImage{}, fmt.Errorf("creating the built-in pause image: %w", err)
		}
	} else if _, err := p.images.Pull(ctx, p.opts.Ref, Auth{}); err != nil {
		return PauseImage{}, fmt.Errorf("pulling the pause image %s: %w", p.opts.Ref, err)
	}
	img, ok, err := p.lookup(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("pause image %s: not usable after it was made", p.opts.Ref)
	}
	return img, err
}

// lookup finds the pause image in storage; ok is false when it must be
// made or pulled first. The built-in name must hold the image of this
// noded's pause binary: one left by another version of noded is replaced.
func (p *PauseImages) lookup(ctx context.Context) (img PauseImage, ok bool, err error) {
	local, err := p.images.Resolve(ctx, p.opts.Ref)
	if errdefs.IsNotFound(err) {
		return PauseImage{}, false, nil
	}
	if err != nil {
		return PauseImage{}, false, err
	}
	if !p.opts.Builtin {
		return PauseImage{LocalImage: local}, true, nil
	}
	want, err := p.builtin()
	if err != nil {
		return PauseImage{}, false, err
	}
	if string(local.ID) != want.ConfigDigest.Encoded() {
		return PauseImage{}, false, nil
	}
	rootfs, err := p.sharedRootfs()
	if err != nil {
		return PauseImage{}, false, err
	}
	return PauseImage{LocalImage: local, SelfConfined: true, Rootfs: rootfs}, true, nil
}

// builtin builds the built-in image once: the binary does not change
// while noded runs.
func (p *PauseImages) builtin() (*pause.Image, error) {
	p.buildOnce.Do(func() {
		p.binary, p.buildErr = os.ReadFile(p.opts.BinaryPath)
		if p.buildErr != nil {
			p.buildErr = fmt.Errorf("read pause binary: %w", p.buildErr)
			return
		}
		p.built, p.buildErr = pause.Build(p.binary)
	})
	return p.built, p.buildErr
}

// sharedRootfs writes the built-in image's shared root filesystem the
// first time a sandbox asks for it (again after a failure) and returns its
// path; "" without a RootfsDir.
func (p *PauseImages) sharedRootfs() (string, error) {
	if p.opts.RootfsDir == "" {
		return "", nil
	}
	p.rootfsMu.Lock()
	defer p.rootfsMu.Unlock()
	if !p.rootfsDone {
		if err := pause.WriteRootfs(p.opts.RootfsDir, p.binary); err != nil {
			return "", err
		}
		p.rootfsDone = true
	}
	return p.opts.RootfsDir, nil
}

func (p *PauseImages) importBuiltin(ctx context.Context) error {
	img, err := p.builtin()
	if err != nil {
		return err
	}
	blobs := map[digest.Digest][]byte{img.DiffID: img.Layer, img.ConfigDigest: img.Config}
	_, err = p.images.Import(ctx, p.opts.Ref, img.Manifest, blobs)
	return err
}
