package main

import (
	"os/exec"
	"path/filepath"

	"github.com/sirupsen/logrus"
)

// criuPath is the criu binary of checkpoints and restores: the
// configured criu-path, else criu on noded's PATH, made absolute so that
// the monitors' helpers run this one whatever their PATH. Without one,
// it is empty: the helpers then look for criu on their own PATH, and a
// checkpoint fails saying criu is missing.
func criuPath(configured string, log *logrus.Entry) string {
	if configured != "" {
		return configured
	}
	p, err := exec.LookPath("criu")
	if err != nil {
		log.Info("no criu on PATH: CheckpointContainer and restores will fail (criu-path sets one)")
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}
