package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
	"github.com/noded-dev/noded/internal/oci/wire"
)

// criuConfigLabel is libcontainer's label (from the spec annotation of
// the same name) naming a CRIU configuration file for its C/R calls.
const criuConfigLabel = "org.criu.config"

// helperRestore creates the container from its bundle, as create does,
// and restores its init from the CRIU images in req.Dir instead of
// starting it (OpRestore). The restored process gets the request's files
// as its stdio (new pipes: the dumped ones died with the monitor's ends),
// and the new container's namespaces, mounts and cgroups; the root file
// system must hold what it held at the dump (the image and the writable
// layer's changes, which noded applied). Established TCP connections come
// back closed (tcp-close: their peers have moved on).
//
// CRIU restores the init as a child of this helper (libcontainer asks for
// RstSibling); once the helper exits, it is the monitor's, a subreaper.
// The restoring *Container does not know the restored init's start time,
// so the state returned is read by a fresh Load.
func helperRestore(req *helperapi.Request, resp *helperapi.Response, log *logrus.Entry) error {
	if !filepath.IsAbs(req.Dir) || !filepath.IsAbs(req.WorkDir) {
		return errf(wire.CodeInvalidArgument, "restore directories must be absolute paths")
	}
	if err := useCriu(req.CriuPath); err != nil {
		return err
	}
	spec, err := loadSpec(req.Bundle, log)
	if err != nil {
		return err
	}
	proc, err := initProcess(spec, req)
	if err != nil {
		return err
	}
	config, err := libcontainerConfig(req.ID, req.Bundle, spec)
	if err != nil {
		return errf(wire.CodeInvalidArgument, "spec: %v", err)
	}
	if err := os.MkdirAll(req.WorkDir, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(req.WorkDir, "criu.conf")
	if err := os.WriteFile(conf, []byte("tcp-close\n"), 0o600); err != nil {
		return err
	}
	config.Labels = append(config.Labels, criuConfigLabel+"="+conf)
	resp.OwnPidNS = config.Namespaces.IsPrivate(configs.NEWPID)
	lc, err := libcontainer.Create(req.Root, req.ID, config)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return errf(wire.CodeAlreadyExists, "container %s already exists", req.ID)
		}
		return fmt.Errorf("create: %w", err)
	}
	err = lc.Restore(proc, &libcontainer.CriuOpts{
		ImagesDirectory: req.Dir,
		WorkDirectory:   req.WorkDir,
		TcpEstablished:  true,
		FileLocks:       true,
	})
	if err != nil {
		_ = lc.Destroy()
		return errf(wire.CodeFailedPrecondition, "restore of %s: %v%s", req.ID, err, criuErrors(filepath.Join(req.WorkDir, "restore.log")))
	}
	restored, err := libcontainer.Load(req.Root, req.ID)
	if err != nil {
		return fmt.Errorf("load %s after its restore: %w", req.ID, err)
	}
	fillState(restored, resp)
	log.Infof("restored from %s, pid %d", req.Dir, resp.Pid)
	return nil
}
