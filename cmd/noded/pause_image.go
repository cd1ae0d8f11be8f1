package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/pause"
	"github.com/noded-dev/noded/internal/sandbox"
)

// sandboxImages is what the sandbox service needs from the images.
type sandboxImages interface {
	Resolve(ctx context.Context, ref string) (sandbox.Image, error)
	PauseImage(ctx context.Context) (sandbox.Image, error)
}

// podImages adapts the image service to the sandbox service and provides
// the pause image: the built-in one is made from the bundled pause binary
// (so a node without registry access runs pods), a configured one is
// pulled on first use, as containerd does with its sandbox image.
type podImages struct {
	svc       *imagesvc.Service
	pauseRef  string
	builtin   bool
	pausePath string

	// mu makes concurrent first pods create or pull the image once.
	mu sync.Mutex
	// made is the built-in image of pausePath, built on first use.
	made     *pause.Image
	makeErr  error
	makeOnce sync.Once
}

func (p *podImages) Resolve(ctx context.Context, ref string) (sandbox.Image, error) {
	img, err := p.svc.Resolve(ctx, ref)
	if err != nil {
		return sandbox.Image{}, err
	}
	return sandbox.Image{ID: img.ID, Name: img.Name, Config: img.Config}, nil
}

func (p *podImages) PauseImage(ctx context.Context) (sandbox.Image, error) {
	if img, ok, err := p.pauseImage(ctx); ok || err != nil {
		return img, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if img, ok, err := p.pauseImage(ctx); ok || err != nil {
		return img, err
	}
	if p.builtin {
		if err := p.importBuiltin(ctx); err != nil {
			return sandbox.Image{}, fmt.Errorf("creating the built-in pause image: %w", err)
		}
	} else if _, err := p.svc.Pull(ctx, p.pauseRef, imagesvc.Auth{}); err != nil {
		return sandbox.Image{}, fmt.Errorf("pulling the pause image %s: %w", p.pauseRef, err)
	}
	img, ok, err := p.pauseImage(ctx)
	if err == nil && !ok {
		err = fmt.Errorf("pause image %s: not usable after it was made", p.pauseRef)
	}
	return img, err
}

// pauseImage looks the pause image up; ok is false when it must be made or
// pulled first. The built-in name must hold the image of this noded's pause
// binary: one left by another version of noded is replaced.
func (p *podImages) pauseImage(ctx context.Context) (img sandbox.Image, ok bool, err error) {
	img, err = p.Resolve(ctx, p.pauseRef)
	if errdefs.IsNotFound(err) {
		return sandbox.Image{}, false, nil
	}
	if err != nil || !p.builtin {
		return img, err == nil, err
	}
	want, err := p.builtinImage()
	if err != nil {
		return sandbox.Image{}, false, err
	}
	if string(img.ID) != want.ConfigDigest.Encoded() {
		return sandbox.Image{}, false, nil
	}
	// noded-pause installs its own seccomp filter (internal/pause).
	img.SelfConfined = true
	return img, true, nil
}

func (p *podImages) builtinImage() (*pause.Image, error) {
	p.makeOnce.Do(func() { p.made, p.makeErr = pause.BuildFromFile(p.pausePath) })
	return p.made, p.makeErr
}

func (p *podImages) importBuiltin(ctx context.Context) error {
	img, err := p.builtinImage()
	if err != nil {
		return err
	}
	blobs := map[digest.Digest][]byte{img.DiffID: img.Layer, img.ConfigDigest: img.Config}
	_, err = p.svc.Import(ctx, p.pauseRef, img.Manifest, blobs)
	return err
}
