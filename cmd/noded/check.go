package main

import (
	"io"

	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/storage"
)

// runCheck is `noded check [--repair]`: the image store check that noded
// runs at a start after a power loss (internal/boot), offline. Without
// --repair it only reports, and fails if anything is damaged; with it,
// damaged containers, images and layers are removed (pull the images
// again). Run it while noded is stopped: a repair under a running noded
// would remove what its pods use.
func runCheck(cfg *config.Config, repair bool, out io.Writer) error {
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat, out)
	if err != nil {
		return err
	}
	store, err := storage.Open(storage.Options{
		Root: cfg.Root, RunRoot: cfg.RunRoot, Driver: cfg.StorageDriver, DriverOptions: cfg.StorageOptions,
		Log: log.WithField("component", "storage"),
	})
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	return checkStore(store, repair, log)
}
