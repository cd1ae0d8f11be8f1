package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/metrics"
	"github.com/noded-dev/noded/internal/sandbox"
	"github.com/noded-dev/noded/internal/storage"
)

// newImageService opens the image store and builds the image service on
// it, registering its metrics. With check (a power loss since the last
// run: internal/boot) the store is checked first and what is damaged
// removed (checkStore). The returned function stops pulls in flight and
// shuts the store down (unmounting what it mounted); serve calls it on
// exit.
func newImageService(cfg *config.Config, log *logrus.Entry, reg *metrics.Registry, check bool, trim imagesvc.Trimmer) (*imagesvc.Service, func(), error) {
	store, err := storage.Open(storage.Options{
		Root:          cfg.Root,
		RunRoot:       cfg.RunRoot,
		Driver:        cfg.StorageDriver,
		DriverOptions: cfg.StorageOptions,
		Log:           log.WithField("component", "storage"),
	})
	if err != nil {
		return nil, nil, err
	}
	closeStore := func() {
		if err := store.Close(); err != nil {
			log.WithError(err).Warn("closing the image store")
		}
	}
	if check {
		if err := checkStore(store, true, log); err != nil {
			closeStore()
			return nil, nil, err
		}
	}
	svc, err := imagesvc.New(imagesvc.Options{
		Store:                store,
		RegistriesConf:       cfg.RegistriesConf,
		SignaturePolicy:      cfg.SignaturePolicy,
		PauseImage:           cfg.PauseImage,
		PinnedImages:         cfg.PinnedImages,
		ProgressTimeout:      cfg.PullProgressTimeout.Duration,
		MaxParallelDownloads: int(cfg.MaxParallelDownloads),
		UserAgent:            "noded/" + version,
		Trim:                 trim,
		Log:                  log.WithField("component", "images"),
		// Only test builds (-tags failpoints) have one.
		FailAfter: failpoint(log),
	})
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	if err := reg.Register(svc.Collectors()...); err != nil {
		svc.Close()
		closeStore()
		return nil, nil, fmt.Errorf("registering image metrics: %w", err)
	}
	return svc, func() {
		svc.Close()
		closeStore()
	}, nil
}

// checkStore runs the store check (storage.Store.Check), logging each
// damaged item and, with repair, removing them. An error is a check that
// could not run, or damage left in place.
func checkStore(store *storage.Store, repair bool, log *logrus.Entry) error {
	start := time.Now()
	damage, errs, err := store.Check(repair)
	if err != nil {
		return err
	}
	for _, l := range damage.Lines() {
		log.WithField("repair", repair).Warn("image store: damaged " + l)
	}
	for _, e := range errs {
		log.WithError(e).Error("image store: removing a damaged item")
	}
	log.WithFields(logrus.Fields{"layers": len(damage.Layers), "images": len(damage.Images), "containers": len(damage.Containers),
		"took": time.Since(start).Round(time.Millisecond)}).Info("image store checked")
	switch {
	case len(errs) > 0:
		return fmt.Errorf("image store: %d damaged items could not be removed (log above)", len(errs))
	case !repair && !damage.Empty():
		return fmt.Errorf("image store: %d damaged items (log above); noded removes them at its next start after an unclean stop, or run noded check --repair", len(damage.Lines()))
	}
	return nil
}

// sandboxImages is what the sandbox service needs from the images.
type sandboxImages interface {
	Resolve(ctx context.Context, ref string) (sandbox.Image, error)
	PauseImage(ctx context.Context) (sandbox.Image, error)
}

// podImages adapts the image service, and its provider of the pause image
// (imagesvc.PauseImages: built-in or pulled), to the sandbox service. A
// reload swaps the provider: new pods get the new pause image, running
// ones keep theirs.
type podImages struct {
	svc   *imagesvc.Service
	pause atomic.Pointer[imagesvc.PauseImages]
}

// newPodImages wires the pause image: the built-in one (made from the
// noded-pause binary next to noded, or the configured one) unless a
// registry pause image is configured.
func newPodImages(cfg *config.Config, svc *imagesvc.Service) (*podImages, error) {
	p := &podImages{svc: svc}
	if err := p.setPauseImage(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// setPauseImage makes cfg's pause image the one new pods get.
func (p *podImages) setPauseImage(cfg *config.Config) error {
	o := imagesvc.PauseOptions{Ref: cfg.PauseImage, Builtin: cfg.PauseImage == config.DefaultPauseImage}
	if o.Builtin {
		var err error
		if o.BinaryPath, err = helperPath(cfg.PausePath, "noded-pause"); err != nil {
			return err
		}
		o.RootfsDir = filepath.Join(cfg.RunDir, "pause-rootfs")
	}
	p.pause.Store(p.svc.PauseImages(o))
	return nil
}

func (p *podImages) Resolve(ctx context.Context, ref string) (sandbox.Image, error) {
	img, err := p.svc.Resolve(ctx, ref)
	if err != nil {
		return sandbox.Image{}, err
	}
	return sandbox.Image{ID: img.ID, Name: img.Name, Config: img.Config}, nil
}

func (p *podImages) PauseImage(ctx context.Context) (sandbox.Image, error) {
	img, err := p.pause.Load().Get(ctx)
	if err != nil {
		return sandbox.Image{}, err
	}
	return sandbox.Image{ID: img.ID, Name: img.Name, Config: img.Config, SelfConfined: img.SelfConfined, Rootfs: img.Rootfs}, nil
}
