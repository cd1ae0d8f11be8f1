package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		ws   unix.WaitStatus
		want int32
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3 << 8, 3},
		{"SIGKILL", unix.WaitStatus(unix.SIGKILL), 137},
		{"SIGTERM with core", unix.WaitStatus(unix.SIGTERM) | 0x80, 143},
	}
	for _, tc := range tests {
		if got := exitCode(tc.ws); got != tc.want {
			t.Errorf("%s: exitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestOOMCount(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if n := oomCount(dir, false); n != 2 {
		t.Errorf("v1: %d", n)
	}
	if n := oomCount(dir, true); n != 1 {
		t.Errorf("v2: %d", n)
	}
	if n := oomCount("", false); n != 0 {
		t.Errorf("no cgroup: %d", n)
	}
	if n := oomCount(filepath.Join(dir, "gone"), false); n != 0 {
		t.Errorf("missing cgroup: %d", n)
	}
}

func TestReadTerminal(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		spec string
		tty  bool
		err  bool
	}{
		{`{"process":{"terminal":true,"args":["sh"]}}`, true, false},
		{`{"process":{"args":["sh"]}}`, false, false},
		{`{"root":{"path":"r"}}`, false, true},
		{`{`, false, true},
	} {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(tc.spec), 0o644); err != nil {
			t.Fatal(err)
		}
		tty, err := readTerminal(dir)
		if tty != tc.tty || (err != nil) != tc.err {
			t.Errorf("%s: got %v, %v", tc.spec, tty, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	ok := []string{"--pod", "p1", "--run-dir", "/run/x", "--state-dir", "/var/x", "--runtime", "/bin/rt"}
	o, err := parseFlags("monitor", ok)
	if err != nil || o.pod != "p1" || o.runtime != "/bin/rt" {
		t.Fatalf("%+v %v", o, err)
	}
	long := "/tmp/" + strings.Repeat("d", 100)
	for name, args := range map[string][]string{
		"no pod":       {"--run-dir", "/run/x", "--state-dir", "/var/x"},
		"bad pod":      {"--pod", "a/b", "--run-dir", "/run/x", "--state-dir", "/var/x"},
		"relative dir": {"--pod", "p", "--run-dir", "run", "--state-dir", "/var/x"},
		"long socket":  {"--pod", "p", "--run-dir", long, "--state-dir", "/var/x"},
	} {
		if _, err := parseFlags("monitor", args); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
