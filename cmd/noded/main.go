// Command noded is a Kubernetes node container runtime: it serves the CRI v1
// RuntimeService and ImageService over gRPC on a unix socket, and nothing else.
//
// Everything the daemon uses is constructed and wired here, explicitly; no
// package registers itself.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"go.podman.io/storage/pkg/reexec"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	// containers/storage unpacks layers in a re-executed copy of this
	// binary (chrooted into the layer); when started as such a helper, do
	// that work and exit before anything else happens.
	if reexec.Init() {
		return
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(os.Stderr, "noded: %v\n", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// run parses the command line and either prints the configuration, writes
// the default CNI network (`noded default-network`) or runs the daemon
// until it is told to stop.
func run(args []string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 0 && (args[0] == "config" || args[0] == "default-network" || args[0] == "check") {
		cmd, args = args[0], args[1:]
	}
	repair := false
	if cmd == "check" && len(args) > 0 && args[0] == "--repair" {
		repair, args = true, args[1:]
	}
	f := newFlags("noded", stderr)
	if err := f.fs.Parse(args); err != nil {
		return errUsage
	}
	if f.fs.NArg() > 0 {
		f.fs.Usage()
		return errUsage
	}
	if f.version {
		fmt.Fprintf(stdout, "noded version %s\n", version)
		return nil
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	if cmd == "check" {
		return runCheck(cfg, repair, stdout)
	}
	if cmd == "default-network" {
		return printDefaultNetwork(cfg, stdout)
	}
	if cmd == "config" {
		out, err := cfg.TOML()
		if err != nil {
			return err
		}
		_, err = stdout.Write(out)
		return err
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	// A reload reads the same files and applies the same flags again.
	return serve(cfg, log, f.load)
}

func newLogger(level, format string, out io.Writer) (*logrus.Entry, error) {
	l := logrus.New()
	if err := configureLogger(l, level, format); err != nil {
		return nil, err
	}
	l.SetOutput(out)
	logrus.SetOutput(out)
	return logrus.NewEntry(l), nil
}

// configureLogger sets the level and format of l, at start and on a reload
// (logrus loggers take both while in use).
func configureLogger(l *logrus.Logger, level, format string) error {
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return err
	}
	var f logrus.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000000000Z07:00"}
	if format == "json" {
		f = &logrus.JSONFormatter{TimestampFormat: "2006-01-02T15:04:05.000000000Z07:00"}
	}
	l.SetLevel(lvl)
	l.SetFormatter(f)
	// The standard logger is what libraries (containers/image, libcni) log
	// through; keep it consistent with ours.
	logrus.SetLevel(lvl)
	logrus.SetFormatter(f)
	return nil
}
