package main

import (
	"errors"
	"fmt"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// helperUpdate applies the linux.resources of the bundle's config.json to
// a created or running container: its cgroups and libcontainer's state
// (state.json), through Container.Set as runc update does, so that the
// state and the cgroups agree (libcontainer re-applies the state's
// resources itself only when it starts an init, but its state is what the
// container's configuration is from then on). The resources are converted
// by specconv exactly as at create, device rules included, so nothing but
// what noded changed in the bundle changes. A memory limit below the
// container's current usage is refused before anything is written; should
// writing fail half-way, libcontainer writes the previous values back.
func helperUpdate(lc *libcontainer.Container, req *helperapi.Request, log *logrus.Entry) error {
	st, err := lc.Status()
	if err != nil {
		return err
	}
	if st == libcontainer.Stopped {
		return errf(wire.CodeFailedPrecondition, "container %s is not running", req.ID)
	}
	spec, err := loadSpec(req.Bundle, log)
	if err != nil {
		return err
	}
	next, err := libcontainerConfig(req.ID, req.Bundle, spec)
	if err != nil {
		return errf(wire.CodeInvalidArgument, "spec: %v", err)
	}
	config := lc.Config()
	// config.Cgroups is libcontainer's own: Set restores from it on failure.
	cg := *config.Cgroups
	cg.Resources = next.Cgroups.Resources
	config.Cgroups = &cg
	if lowersMemory(config.Cgroups.Resources, lc.Config().Cgroups.Resources) {
		stats, err := lc.Stats()
		if err != nil {
			return errf(wire.CodeFailedPrecondition, "reading the container's memory usage: %v", err)
		}
		m := stats.CgroupStats.MemoryStats
		if err := checkMemoryUsage(cg.Resources, m.Usage.Usage, m.SwapUsage.Usage); err != nil {
			return errf(wire.CodeFailedPrecondition, "%v", err)
		}
	}
	if err := lc.Set(config); err != nil {
		switch {
		case errors.Is(err, libcontainer.ErrNotRunning):
			return errf(wire.CodeFailedPrecondition, "container %s is not running", req.ID)
		case errors.Is(err, unix.EBUSY):
			return errf(wire.CodeFailedPrecondition, "%v", err)
		case errors.Is(err, unix.EINVAL), errors.Is(err, cgroups.ErrV1NoUnified):
			return errf(wire.CodeInvalidArgument, "%v", err)
		}
		return err
	}
	return nil
}

// lowersMemory says whether next lowers the memory or memory+swap limit
// of cur (-1 and 0 are no limit and not set).
func lowersMemory(next, cur *cgroups.Resources) bool {
	lower := func(n, c int64) bool { return n > 0 && (c <= 0 || n < c) }
	return lower(next.Memory, cur.Memory) || lower(next.MemorySwap, cur.MemorySwap)
}

// checkMemoryUsage refuses limits below what the container uses now
// (usage: memory.usage_in_bytes on v1, memory.current on v2; swapUsage:
// memory+swap, which is what MemorySwap limits on v1 and libcontainer
// converts for v2): the v1 kernel would fail the write after trying to
// reclaim (EBUSY), and v2 would reclaim and then OOM-kill the container.
// runc's MemoryCheckBeforeUpdate makes the same check on v2 only.
func checkMemoryUsage(next *cgroups.Resources, usage, swapUsage uint64) error {
	if next.Memory > 0 && uint64(next.Memory) < usage {
		return fmt.Errorf("memory limit %d bytes is below the container's current memory usage of %d bytes", next.Memory, usage)
	}
	if next.MemorySwap > 0 && uint64(next.MemorySwap) < swapUsage {
		return fmt.Errorf("memory+swap limit %d bytes is below the container's current memory+swap usage of %d bytes", next.MemorySwap, swapUsage)
	}
	return nil
}
