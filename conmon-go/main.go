// Command conmon-go is noded's container monitor: one long-lived process per
// pod that is the parent of the pod's containers, owns their stdio (written
// to CRI log files), records their exit in state files and answers noded
// over a unix socket. noded can restart, even be SIGKILLed, without touching
// the containers.
//
// The monitor links no libcontainer code, so that it stays small: every
// libcontainer operation runs in a short-lived helper, conmon-go-runtime
// (./runtime), found next to conmon-go or given with --runtime. The
// container processes are the helper's children; when it exits they are
// reparented to the monitor, a child subreaper.
//
// Usage:
//
//	conmon-go monitor --pod ID --run-dir DIR --state-dir DIR [--runtime PATH] [--runtime-fd N] [--ready-fd N]
//	conmon-go version
//
// noded (internal/oci) starts the monitor in its own session and waits on
// the --ready-fd pipe until it listens.
//
// See README.md for the design, the protocol (internal/oci/wire) and the
// memory figures.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// version is set by the build (-ldflags -X main.version=...).
var version = "dev"

type options struct {
	pod      string
	runDir   string
	stateDir string
	logLevel string
	runtime  string
	// criuRuntime is the helper built with checkpoint/restore, run for
	// those two operations only.
	criuRuntime string
	// runtimeFd is an inherited sealed memfd copy of runtime, which the
	// helpers are started from (sealedexe.go); -1: none.
	runtimeFd int
	readyFd   int
}

func parseFlags(name string, args []string) (*options, error) {
	var o options
	fs := flag.NewFlagSet("conmon-go "+name, flag.ContinueOnError)
	fs.StringVar(&o.pod, "pod", "", "pod id")
	fs.StringVar(&o.runDir, "run-dir", "", "directory for sockets and libcontainer state (tmpfs)")
	fs.StringVar(&o.stateDir, "state-dir", "", "directory for container state files (persistent)")
	fs.StringVar(&o.logLevel, "log-level", "info", "monitor log level (debug, info, warn, error)")
	fs.StringVar(&o.runtime, "runtime", "", "the conmon-go-runtime helper (default: next to conmon-go)")
	fs.StringVar(&o.criuRuntime, "criu-runtime", "", "the conmon-go-runtime helper with checkpoint/restore (default: conmon-go-runtime-criu next to --runtime)")
	fs.IntVar(&o.runtimeFd, "runtime-fd", -1, "internal: fd of a sealed copy of --runtime (a memfd) to start the helpers from")
	fs.IntVar(&o.readyFd, "ready-fd", -1, "internal: fd to report readiness on")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if !wire.ValidID(o.pod) {
		return nil, fmt.Errorf("invalid or missing --pod %q", o.pod)
	}
	if !filepath.IsAbs(o.runDir) || !filepath.IsAbs(o.stateDir) {
		return nil, fmt.Errorf("--run-dir and --state-dir must be absolute paths")
	}
	if o.runtime == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("locating conmon-go-runtime: %w", err)
		}
		o.runtime = filepath.Join(filepath.Dir(self), "conmon-go-runtime")
	}
	if !filepath.IsAbs(o.runtime) {
		return nil, fmt.Errorf("--runtime must be an absolute path")
	}
	if o.criuRuntime == "" {
		o.criuRuntime = o.runtime + "-criu"
	}
	if !filepath.IsAbs(o.criuRuntime) {
		return nil, fmt.Errorf("--criu-runtime must be an absolute path")
	}
	o.runDir = filepath.Clean(o.runDir)
	o.stateDir = filepath.Clean(o.stateDir)
	if l := len(wire.SocketPath(o.runDir, o.pod)); l > wire.MaxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, more than the %d of sun_path: use a shorter --run-dir",
			wire.SocketPath(o.runDir, o.pod), l, wire.MaxSocketPath)
	}
	return &o, nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: conmon-go monitor|version [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "monitor":
		os.Exit(runMonitor(os.Args[2:]))
	case "version", "--version":
		fmt.Printf("conmon-go %s (protocol %d)\n", version, wire.Version)
	default:
		fmt.Fprintf(os.Stderr, "conmon-go: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
