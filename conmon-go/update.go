package main

import (
	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// update applies the cgroup resources of the container's bundle to the
// container (wire.OpUpdate): noded rewrote its config.json, and a helper
// sets the cgroups and libcontainer's state from it, as runc update does.
// An exited container has no cgroups left to change.
func (cs *containers) update(id string) error {
	c, err := cs.table.get(id)
	if err != nil {
		return err
	}
	snap := c.snapshot()
	if snap.Status == wire.StatusExited {
		return errf(wire.CodeFailedPrecondition, "container %s is not running", id)
	}
	_, err = cs.helpers.run(&helperapi.Request{Op: helperapi.OpUpdate, ID: id, Bundle: snap.Bundle})
	return err
}
