//go:build failpoints

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
)

// failpoint is the step hook of test builds (go build -tags failpoints:
// bin/noded-failpoints, for the crash tests), armed by NODED_FAILPOINT:
//
//	kill@STEP  noded sends itself SIGKILL right after the step STEP of an
//	           operation (the names of internal/sandbox's steps), as a
//	           crash there would: no rollback or later step runs.
//	fail@STEP  the operation fails right after STEP, every time; its
//	           rollback runs.
//
// Production builds have no such hook (failpoint_off.go).
func failpoint(log *logrus.Entry) func(step string) error {
	mode, step, ok := strings.Cut(os.Getenv("NODED_FAILPOINT"), "@")
	if !ok || step == "" || mode != "kill" && mode != "fail" {
		return nil
	}
	log.WithFields(logrus.Fields{"step": step, "mode": mode}).Warn("failpoint armed")
	return func(at string) error {
		if at != step {
			return nil
		}
		if mode == "fail" {
			return fmt.Errorf("failpoint: injected failure after step %s", at)
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// eventQueue is NODED_EVENT_QUEUE in test builds: a short event queue per
// GetContainerEvents subscriber, so that a test overflows it with a few
// events (0, the default, when unset or invalid).
func eventQueue(log *logrus.Entry) int {
	n, err := strconv.Atoi(os.Getenv("NODED_EVENT_QUEUE"))
	if err != nil || n <= 0 {
		return 0
	}
	log.WithField("queue", n).Warn("event queue shortened")
	return n
}
