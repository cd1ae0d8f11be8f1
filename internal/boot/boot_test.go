package boot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		// prepare runs on a state and run dir after a first start.
		prepare                  func(t *testing.T, s *Start, stateDir, runDir string)
		unclean, rebooted, first bool
	}{
		{"first start", nil, false, false, true},
		{"clean stop, same boot", func(t *testing.T, s *Start, _, _ string) {
			if err := s.CleanShutdown(); err != nil {
				t.Fatal(err)
			}
		}, false, false, false},
		{"killed, same boot", func(*testing.T, *Start, string, string) {}, true, false, false},
		{"power loss: run dir empty", func(t *testing.T, _ *Start, _, runDir string) {
			if err := os.RemoveAll(runDir); err != nil {
				t.Fatal(err)
			}
		}, true, true, false},
		{"clean stop, then reboot", func(t *testing.T, s *Start, _, runDir string) {
			if err := s.CleanShutdown(); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(runDir); err != nil {
				t.Fatal(err)
			}
		}, false, true, false},
		{"boot ID changed", func(t *testing.T, _ *Start, stateDir, _ string) {
			if err := os.WriteFile(filepath.Join(stateDir, lastBootFile), []byte("another-boot\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, true, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(bootIDPath); err != nil && tc.name == "boot ID changed" {
				t.Skip("no boot ID on this kernel: " + err.Error())
			}
			stateDir, runDir := t.TempDir(), filepath.Join(t.TempDir(), "run")
			if tc.prepare != nil {
				first, err := Detect(stateDir, runDir)
				if err != nil {
					t.Fatal(err)
				}
				if err := first.Started(); err != nil {
					t.Fatal(err)
				}
				tc.prepare(t, first, stateDir, runDir)
			}
			got, err := Detect(stateDir, runDir)
			if err != nil {
				t.Fatal(err)
			}
			if got.First != tc.first || got.Unclean != tc.unclean || got.Rebooted != tc.rebooted {
				t.Errorf("first %v unclean %v rebooted %v (%s), want %v %v %v",
					got.First, got.Unclean, got.Rebooted, got.Why, tc.first, tc.unclean, tc.rebooted)
			}
		})
	}
}
