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
}

func (p *podImages) Resolve(ctx context.Context, ref string) (sandbox.Image, error) {
	img, err := p.svc.Resolve(ctx, ref)
	if err != nil {
		return sandbox.Image{}, err
	}
	return sandbox.Image{ID: img.ID, Name: img.Name, Config: img.Config}, nil
}

func (p *podImages) PauseImage(ctx context.Context) (sandbox.Image, error) {
	if img, err := p.Resolve(ctx, p.pauseRef); err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if img, err := p.Resolve(ctx, p.pauseRef); err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	if p.builtin {
		if err := p.importBuiltin(ctx); err != nil {
			return sandbox.Image{}, fmt.Errorf("creating the built-in pause image: %w", err)
		}
	} else if _, err := p.svc.Pull(ctx, p.pauseRef, imagesvc.Auth{}); err != nil {
		return sandbox.Image{}, fmt.Errorf("pulling the pause image %s: %w", p.pauseRef, err)
	}
	return p.Resolve(ctx, p.pauseRef)
}

func (p *podImages) importBuiltin(ctx context.Context) error {
	img, err := pause.BuildFromFile(p.pausePath)
	if err != nil {
		return err
	}
	blobs := map[digest.Digest][]byte{img.DiffID: img.Layer, img.ConfigDigest: img.Config}
	_, err = p.svc.Import(ctx, p.pauseRef, img.Manifest, blobs)
	return err
}
