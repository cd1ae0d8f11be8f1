// Package boot tells noded, at start, how the previous run ended: whether
// it stopped cleanly (a clean-shutdown marker in the state directory, as
// CRI-O's clean_shutdown_file) and whether the node rebooted since (the
// run directory, a tmpfs, came back without noded's marker, or the
// kernel's boot ID changed).
//
// After a power loss (an unclean end and a reboot: PowerLoss) noded checks
// and repairs the image store, which can hold half-written layers; a
// crash of noded alone cannot leave those (the kernel still has every
// write), and layers it was unpacking are removed at every start anyway.
// After any reboot every pod is ended (internal/sandbox: recoverReboot),
// since its processes, namespaces and mounts are gone.
//
// Lifecycle: Detect once at start, before anything reads the records;
// Started once the recovery is done (from then on a crash is unclean
// again); CleanShutdown at the very end of a clean stop.
package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/noded-dev/noded/internal/atomicfile"
)

// File names, in the state directory (persistent) and the run directory
// (a tmpfs: gone after a reboot).
const (
	cleanShutdownFile = "clean-shutdown"
	lastBootFile      = "boot-id"
	runMarkerFile     = "noded-booted"
)

// bootIDPath is the kernel's random ID of this boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// Start is what Detect found.
type Start struct {
	// First is a start on a state directory no noded ran on before.
	First bool
	// Unclean is an earlier run that did not stop cleanly: killed,
	// crashed, or the node lost power.
	Unclean bool
	// Rebooted is a node that rebooted since the earlier run.
	Rebooted bool
	// Why says what showed the reboot ("" when none).
	Why string

	stateDir, runDir, bootID string
}

// Detect reads the markers of stateDir and runDir. It changes nothing
// (Started does).
func Detect(stateDir, runDir string) (*Start, error) {
	s := &Start{stateDir: stateDir, runDir: runDir}
	id, err := os.ReadFile(bootIDPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the boot ID: %w", err)
	}
	s.bootID = strings.TrimSpace(string(id))
	last, err := os.ReadFile(filepath.Join(stateDir, lastBootFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.First = true
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("reading the last boot ID: %w", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, cleanShutdownFile)); errors.Is(err, os.ErrNotExist) {
		s.Unclean = true
	}
	if _, err := os.Stat(filepath.Join(runDir, runMarkerFile)); errors.Is(err, os.ErrNotExist) {
		s.Rebooted, s.Why = true, "the run directory "+runDir+" came back empty"
	} else if l := strings.TrimSpace(string(last)); s.bootID != "" && l != s.bootID {
		s.Rebooted, s.Why = true, "the boot ID changed from "+l+" to "+s.bootID
	}
	return s, nil
}

// PowerLoss is an unclean end followed by a reboot: what may have cut
// writes short on disk. Checking the store reads every layer (seconds per
// gigabyte), so a mere restart after a crash does not do it.
func (s *Start) PowerLoss() bool { return s.Unclean && s.Rebooted }

// Started records this run: the boot ID, the run directory's marker, and
// no clean-shutdown marker (a crash from now on is unclean). Call it once
// recovery is done, so that a crash during recovery repeats it.
func (s *Start) Started() error {
	if err := os.MkdirAll(s.runDir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.stateDir, lastBootFile), []byte(s.bootID+"\n"), 0o644); err != nil {
		return fmt.Errorf("recording the boot ID: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.runDir, runMarkerFile), []byte(s.bootID+"\n"), 0o644); err != nil {
		return fmt.Errorf("marking the run directory: %w", err)
	}
	if err := os.Remove(filepath.Join(s.stateDir, cleanShutdownFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the clean-shutdown marker: %w", err)
	}
	return nil
}

// CleanShutdown records that this run ended cleanly: requests finished,
// records written. The next start skips the storage check.
func (s *Start) CleanShutdown() error {
	return atomicfile.WriteFile(filepath.Join(s.stateDir, cleanShutdownFile), []byte("noded stopped cleanly\n"), 0o644)
}
