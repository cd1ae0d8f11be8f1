package main

import (
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/imagesvc"
)

// reloader applies a new configuration to the running daemon on SIGHUP
// (systemd's ExecReload): the files are read again, the command-line
// flags applied again on top, and the keys config.Reloadable names take
// effect without disturbing running pods. A key that needs a restart is
// named in a warning and keeps its running value; a configuration that
// does not load or validate is refused whole.
//
// reload runs on serve's goroutine only, so running needs no lock.
type reloader struct {
	load    func() (*config.Config, error)
	running *config.Config
	logger  *logrus.Logger
	images  imageSettings
	pause   pauseSetter
	network networkScan
}

// imageSettings is what a reload changes in the image service.
type imageSettings interface {
	Reconfigure(imagesvc.Settings) error
}

// pauseSetter swaps the pause image new pods get.
type pauseSetter interface {
	setPauseImage(cfg *config.Config) error
}

// networkScan re-reads the CNI configuration directory.
type networkScan interface {
	NetworkName() (name, file string, err error)
}

func (r *reloader) reload(log *logrus.Entry) {
	next, err := r.load()
	if err != nil {
		log.WithError(err).Error("reload: the configuration does not load; nothing changed")
		return
	}
	var applied, restart []string
	for _, k := range config.Changed(r.running, next) {
		if config.Reloadable(k) {
			applied = append(applied, k)
		} else {
			restart = append(restart, k)
		}
	}
	want := config.WithReloaded(r.running, next)
	// Everything that can refuse is tried before anything changes.
	if err := r.images.Reconfigure(imagesvc.Settings{
		PauseImage: want.PauseImage, PinnedImages: want.PinnedImages,
		ProgressTimeout: want.PullProgressTimeout.Duration, MaxParallelDownloads: int(want.MaxParallelDownloads),
	}); err != nil {
		log.WithError(err).Error("reload: image settings refused; nothing changed")
		return
	}
	if err := r.pause.setPauseImage(want); err != nil {
		log.WithError(err).Error("reload: pause image refused; keeping the running one")
		want.PauseImage = r.running.PauseImage
	}
	if err := configureLogger(r.logger, want.LogLevel, want.LogFormat); err != nil {
		log.WithError(err).Error("reload: log settings refused")
		want.LogLevel, want.LogFormat = r.running.LogLevel, r.running.LogFormat
	}
	r.running = want
	if len(restart) > 0 {
		log.WithField("keys", restart).Warn("reload: these keys take effect only at a restart; running with their old values")
	}
	fields := logrus.Fields{"applied": applied}
	if name, file, err := r.network.NetworkName(); err == nil {
		fields["cni_network"], fields["cni_file"] = name, file
	} else {
		fields["cni_error"] = err.Error()
	}
	log.WithFields(fields).Info("reloaded the configuration; registries.conf and the signature policy are read again at the next pull")
}
