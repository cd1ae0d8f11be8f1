package main

import (
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/imagesvc"
	"github.com/noded-dev/noded/internal/metrics"
	"github.com/noded-dev/noded/internal/storage"
)

// newImageService opens the image store and builds the image service on
// it, registering its metrics. The returned function stops pulls in
// flight and shuts the store down (unmounting what it mounted); serve
// calls it on exit.
func newImageService(cfg *config.Config, log *logrus.Entry, reg *metrics.Registry) (*imagesvc.Service, func(), error) {
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
	svc, err := imagesvc.New(imagesvc.Options{
		Store:                store,
		RegistriesConf:       cfg.RegistriesConf,
		SignaturePolicy:      cfg.SignaturePolicy,
		PauseImage:           cfg.PauseImage,
		ProgressTimeout:      cfg.PullProgressTimeout.Duration,
		MaxParallelDownloads: int(cfg.MaxParallelDownloads),
		UserAgent:            "noded/" + version,
		Log:                  log.WithField("component", "images"),
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
