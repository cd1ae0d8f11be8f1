//go:build !failpoints

package main

import "github.com/sirupsen/logrus"

// failpoint is nil in production builds: no create step can be made to
// fail or kill noded (see failpoint.go, built only with -tags failpoints).
func failpoint(*logrus.Entry) func(step string) error { return nil }
