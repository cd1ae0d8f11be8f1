package main

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/netcni"
)

// defaultNetwork writes noded's default CNI network into cni-config-dir
// when cni-default-network is on and the directory holds no network. It
// returns the file written, "" when it wrote none.
func defaultNetwork(cfg *config.Config) (string, error) {
	if !cfg.CNIDefaultNetwork {
		return "", nil
	}
	return netcni.WriteDefaultNetwork(cfg.CNIConfigDir, netcni.HostIPv6())
}

// logDefaultNetwork is defaultNetwork at start: a failure is only a
// warning, since host-network pods run without any network and the
// operator may still install one (noded re-reads the directory).
func logDefaultNetwork(cfg *config.Config, log *logrus.Entry) {
	file, err := defaultNetwork(cfg)
	switch {
	case err != nil:
		log.WithError(err).Warn("cannot write the default CNI network (cni-default-network); pods need a network in cni-config-dir")
	case file != "":
		log.WithField("file", file).Info("cni-config-dir held no network: wrote noded's default network")
	}
}

// printDefaultNetwork is `noded default-network`: the same as at start, for
// an installer that wants the network in place before noded first runs.
func printDefaultNetwork(cfg *config.Config, stdout io.Writer) error {
	if !cfg.CNIDefaultNetwork {
		_, err := fmt.Fprintln(stdout, "cni-default-network is off: nothing written")
		return err
	}
	file, err := defaultNetwork(cfg)
	if err != nil {
		return err
	}
	if file == "" {
		_, err = fmt.Fprintf(stdout, "%s already holds a network: nothing written\n", cfg.CNIConfigDir)
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s\n", file)
	return err
}
