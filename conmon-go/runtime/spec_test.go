package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/apparmor"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
)

func TestAdjustSpec(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	seccompProfile := &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}}
	tests := []struct {
		name    string
		host    hostLimits
		linux   *specs.Linux
		wantErr bool
	}{
		{name: "no seccomp profile, no seccomp support", host: hostLimits{seccompEnabled: false}},
		{name: "a seccomp profile needs seccomp support", host: hostLimits{seccompEnabled: false}, linux: seccompProfile, wantErr: true},
		{name: "a seccomp profile with seccomp support", host: hostLimits{seccompEnabled: true}, linux: seccompProfile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			adj := -998
			s := &specs.Spec{
				Process: &specs.Process{
					Args: []string{"x"},
					Capabilities: &specs.LinuxCapabilities{
						Bounding:  []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_KILL"},
						Effective: []string{"CAP_SYS_RESOURCE"},
					},
					OOMScoreAdj: &adj,
				},
				Linux: tc.linux,
			}
			err := adjustSpec(s, tc.host, log)
			if (err != nil) != tc.wantErr {
				t.Fatalf("adjustSpec: %v, want error: %v", err, tc.wantErr)
			}
			// Capabilities and oom_score_adj are noded's (internal/specgen
			// fits them to the host): the helper runs them as they are.
			if got := s.Process.Capabilities.Bounding; !reflect.DeepEqual(got, []string{"CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_KILL"}) {
				t.Errorf("bounding changed to %v", got)
			}
			if got := s.Process.Capabilities.Effective; !reflect.DeepEqual(got, []string{"CAP_SYS_RESOURCE"}) {
				t.Errorf("effective changed to %v", got)
			}
			if *s.Process.OOMScoreAdj != -998 {
				t.Errorf("oom_score_adj changed to %d", *s.Process.OOMScoreAdj)
			}
		})
	}
}

func TestAdjustSpecAppArmor(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Args: []string{"x"}, ApparmorProfile: "runtime/default"}}
	if err := adjustSpec(s, hostLimits{}, logrus.NewEntry(logrus.New())); err != nil {
		t.Fatal(err)
	}
	want := "runtime/default"
	if !apparmor.IsEnabled() {
		want = "" // ignored where AppArmor is disabled
	}
	if s.Process.ApparmorProfile != want {
		t.Fatalf("profile %q, want %q", s.Process.ApparmorProfile, want)
	}
}

func TestNewProcess(t *testing.T) {
	p := &specs.Process{
		Args: []string{"sh"}, Env: []string{"A=1"}, Cwd: "/w",
		User:    specs.User{UID: 1000, GID: 100, AdditionalGids: []uint32{5, 6}},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}},
	}
	lp, err := newProcess(p)
	if err != nil {
		t.Fatal(err)
	}
	if lp.UID != 1000 || lp.GID != 100 || !reflect.DeepEqual(lp.AdditionalGroups, []int{5, 6}) || lp.Cwd != "/w" {
		t.Errorf("%+v", lp)
	}
	if len(lp.Rlimits) != 1 || lp.Rlimits[0].Hard != 10 || lp.Rlimits[0].Soft != 5 {
		t.Errorf("rlimits %+v", lp.Rlimits)
	}
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}
	if _, err := newProcess(p); err == nil {
		t.Error("unknown rlimit accepted")
	}
}

func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"process":{"args":["sh"]},"root":{"path":"rootfs"}}`)
	s, err := readSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root.Path != filepath.Join(dir, "rootfs") {
		t.Errorf("relative root resolved to %q", s.Root.Path)
	}
	for _, bad := range []string{`{"root":{"path":"r"}}`, `{"process":{"args":[]},"root":{"path":"r"}}`, `{"process":{"args":["sh"]}}`} {
		write(bad)
		if _, err := readSpec(dir); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestReadProcess(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, spec string
		args       []string // nil: an error is expected
	}{
		{"whole spec", `{"ociVersion":"1.2.0","process":{"args":["sh","-c","true"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"}]}}`, []string{"sh", "-c", "true"}},
		{"no process", `{"root":{"path":"r"}}`, nil},
		{"not json", `{"process":`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.spec), 0o644); err != nil {
				t.Fatal(err)
			}
			p, err := readProcess(dir)
			if tc.args == nil {
				if err == nil {
					t.Fatalf("accepted %s", tc.spec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Args, tc.args) || p.Cwd != "/" {
				t.Errorf("process %+v", p)
			}
		})
	}
}
