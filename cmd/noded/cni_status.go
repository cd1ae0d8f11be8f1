package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// cniStatus is a stand-in readiness check until internal/netcni is wired:
// ready when the CNI conf dir holds a network configuration file.
type cniStatus struct{ dir string }

func newCNIStatus(dir string) cniStatus { return cniStatus{dir: dir} }

func (c cniStatus) Status() error {
	for _, pattern := range []string{"*.conflist", "*.conf", "*.json"} {
		matches, _ := filepath.Glob(filepath.Join(c.dir, pattern))
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Mode().IsRegular() {
				return nil
			}
		}
	}
	return fmt.Errorf("cni config uninitialized: no network config found in %s", c.dir)
}
