//go:build failpoints

package main

import (
	"os"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
)

// failpoint is the create-step hook of test builds (go build -tags
// failpoints: bin/noded-failpoints, for the crash tests). With
// NODED_FAILPOINT=kill@STEP, noded sends itself SIGKILL right after the
// step STEP of a create (the names of internal/sandbox's steps), as a
// crash there would: nothing of the create's rollback runs. Production
// builds have no such hook (failpoint_off.go).
func failpoint(log *logrus.Entry) func(step string) error {
	step, ok := strings.CutPrefix(os.Getenv("NODED_FAILPOINT"), "kill@")
	if !ok || step == "" {
		return nil
	}
	log.WithField("step", step).Warn("failpoint armed: noded kills itself after this create step")
	return func(at string) error {
		if at == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return nil
	}
}
