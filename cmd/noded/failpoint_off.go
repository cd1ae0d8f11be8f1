//go:build !failpoints

package main

import "github.com/sirupsen/logrus"

// failpoint is nil in production builds: no create step can be made to
// fail or kill noded (see failpoint.go, built only with -tags failpoints).
func failpoint(*logrus.Entry) func(step string) error { return nil }

// eventQueue is 0 (sandbox.DefaultEventQueue) in production builds.
func eventQueue(*logrus.Entry) int { return 0 }
