// Package runclayout is everything noded and its monitor know about the
// private on-disk layout of runc's libcontainer, gathered in one place.
//
// libcontainer's Go API is imported by conmon-go-runtime only (the helper),
// but two things outside it look at libcontainer's files directly:
//
//   - the monitor (conmon-go) starts a created container itself, without a
//     helper process, by doing what libcontainer's Container.Exec does with
//     the exec fifo (conmon-go/startfifo.go); it also finds the containers a
//     previous monitor left (adoption) and the leftovers of a failed create
//     by their state directories;
//   - noded (internal/oci) checks for a container's state directory to tell
//     whether a dead monitor left a container set up (Runtime.Delete).
//
// None of this is a stable interface of runc: it is what runc v1.4
// (libcontainer/factory_linux.go and container_linux.go) does. The test
// TestRuncLayout in conmon-go/runtime, where libcontainer can be imported,
// checks every fact below against the runc version go.mod pins, so that a
// runc upgrade that changes the layout fails there rather than in
// production. This package imports nothing from runc (only conmon-go/runtime
// may), nothing beyond os and path/filepath, so the monitor stays small.
package runclayout

import (
	"os"
	"path/filepath"
)

// The layout, for libcontainer.Create(root, id, config):
//
//	<root>/                 the monitor's libcontainer root (one per pod)
//	<root>/<id>/            the container's state directory, mode 0711,
//	                        made by Create and removed by Destroy
//	<root>/<id>/state.json  libcontainer's State (pid, start time, cgroup
//	                        paths, config), rewritten atomically
//	<root>/<id>/exec.fifo   a FIFO (mode 0622), present from Start until the
//	                        user's program is released
const (
	// StateFile is libcontainer's state file in a container's state
	// directory (runc's stateFilename).
	StateFile = "state.json"
	// ExecFifo is the FIFO in a container's state directory that holds the
	// container's init back between create and start (runc's
	// execFifoFilename).
	//
	// The handshake: the init, once the container is set up, opens the
	// FIFO for writing, which blocks until a reader opens it; it then
	// writes one byte ("0") and execs the user's program. The starter
	// opens the FIFO for reading, reads to EOF, and must get at least one
	// byte (none: the init is gone, nothing was started); it then removes
	// the FIFO. libcontainer tells a created container from a running one
	// by the FIFO alone: present while the init lives is "created",
	// absent is "running".
	ExecFifo = "exec.fifo"
)

// ContainerDir is the state directory of container id under root.
func ContainerDir(root, id string) string { return filepath.Join(root, id) }

// StatePath is the state file of container id under root.
func StatePath(root, id string) string { return filepath.Join(root, id, StateFile) }

// ExecFifoPath is the exec FIFO of container id under root.
func ExecFifoPath(root, id string) string { return filepath.Join(root, id, ExecFifo) }

// Exists reports whether container id has a state directory under root:
// libcontainer set it up and it has not been destroyed (a created or
// running container, or what a failed or interrupted create left behind).
func Exists(root, id string) bool {
	_, err := os.Stat(ContainerDir(root, id))
	return err == nil
}

// ContainerIDs lists the names of the state directories under root, in
// directory order; the caller checks that each is a valid container id.
// A missing root gives no names and no error.
func ContainerIDs(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}
