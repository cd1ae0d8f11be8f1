// Command conmon-go-runtime is the libcontainer half of noded's container
// monitor. conmon-go, the long-lived per-pod monitor, links no libcontainer
// code so that it stays small; for every libcontainer operation (create,
// start, kill, exec, destroy, inspect) it runs this program once, with a
// helperapi.Request on stdin, and reads a helperapi.Response on stdout.
//
// It is also libcontainer's "init": libcontainer re-executes this binary as
// "conmon-go-runtime init" inside the new namespaces to set the container
// up before it execs the user's program. It is not meant to be run by hand.
package main

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	_ "github.com/opencontainers/cgroups/devices" // device cgroup rules (v1 files, v2 eBPF)
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // nsexec() runs before the Go runtime for "init"
)

func main() {
	// The "init" re-exec: nsenter's C constructor has already joined or
	// created the namespaces; Init sets the container up and execs the
	// user's process. It never returns. First in main, so that nothing of
	// this program runs before it (this package has no init functions).
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	if len(os.Args) == 2 && os.Args[1] == "helper" {
		// Started from a sealed memfd through /proc/self/fd/N, the
		// process would be named "N" (ps, top): name it.
		if name, err := unix.BytePtrFromString("conmon-go-runtime"); err == nil {
			_ = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(name)), 0, 0, 0)
		}
		os.Exit(runHelper())
	}
	fmt.Fprintln(os.Stderr, "conmon-go-runtime is run by conmon-go (\"conmon-go-runtime helper\" with a request on stdin)")
	os.Exit(2)
}
