package main

import (
	"os"
	"testing"

	"github.com/noded-dev/noded/internal/oci/wire"
)

func TestCheckTransition(t *testing.T) {
	const (
		created = wire.StatusCreated
		running = wire.StatusRunning
		exited  = wire.StatusExited
	)
	tests := []struct {
		from, to string
		ok       bool
	}{
		{created, running, true},
		{created, exited, true},
		{running, exited, true},
		{created, created, false},
		{running, running, false},
		{running, created, false},
		{exited, exited, false},
		{exited, created, false},
		{exited, running, false},
		{"", created, false},
		{"", exited, false},
		{"paused", exited, false},
		{created, "paused", false},
	}
	for _, tc := range tests {
		t.Run(tc.from+"→"+tc.to, func(t *testing.T) {
			if err := checkTransition(tc.from, tc.to); (err == nil) != tc.ok {
				t.Fatalf("checkTransition = %v, want allowed: %v", err, tc.ok)
			}
		})
	}
}

func TestTransition(t *testing.T) {
	setExit := func(st *wire.ContainerState) { st.ExitCode, st.Reason = 3, "Error" }
	tests := []struct {
		name     string
		from     string
		to       string
		recorded bool
		mutate   func(*wire.ContainerState)
		// want: the status afterwards; file: the status in the state file
		// ("" for none); closed: c.exited is closed.
		want, file string
		wantErr    bool
		closed     bool
	}{
		{name: "start, recorded", from: wire.StatusCreated, to: wire.StatusRunning, recorded: true,
			want: wire.StatusRunning, file: wire.StatusRunning},
		{name: "run before publication: memory only", from: wire.StatusCreated, to: wire.StatusRunning,
			want: wire.StatusRunning},
		{name: "exit, recorded", from: wire.StatusRunning, to: wire.StatusExited, recorded: true, mutate: setExit,
			want: wire.StatusExited, file: wire.StatusExited, closed: true},
		{name: "exit after delete: no file again", from: wire.StatusRunning, to: wire.StatusExited, mutate: setExit,
			want: wire.StatusExited, closed: true},
		{name: "exit before start", from: wire.StatusCreated, to: wire.StatusExited, recorded: true, mutate: setExit,
			want: wire.StatusExited, file: wire.StatusExited, closed: true},
		{name: "restart refused", from: wire.StatusExited, to: wire.StatusRunning, recorded: true,
			want: wire.StatusExited, wantErr: true},
		{name: "second exit refused", from: wire.StatusExited, to: wire.StatusExited, recorded: true, mutate: setExit,
			want: wire.StatusExited, wantErr: true},
		{name: "mutate cannot choose the status", from: wire.StatusCreated, to: wire.StatusRunning, recorded: true,
			mutate: func(st *wire.ContainerState) { st.Status = wire.StatusExited },
			want:   wire.StatusRunning, file: wire.StatusRunning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{stateDir: t.TempDir(), log: newLogger("error")}
			c := &ctr{id: "c1", recorded: tc.recorded, exited: make(chan struct{}),
				st: wire.ContainerState{ID: "c1", Pod: "p", Status: tc.from}}
			c.mu.Lock()
			err := r.transition(c, tc.to, tc.mutate)
			c.mu.Unlock()
			if (err != nil) != tc.wantErr {
				t.Fatalf("transition: %v, want error: %v", err, tc.wantErr)
			}
			if got := c.snapshot(); got.Status != tc.want {
				t.Errorf("status %s, want %s", got.Status, tc.want)
			} else if tc.wantErr && *got != (wire.ContainerState{ID: "c1", Pod: "p", Status: tc.from}) {
				t.Errorf("a refused transition changed the state: %+v", got)
			} else if tc.mutate != nil && !tc.wantErr && tc.to == wire.StatusExited && got.ExitCode != 3 {
				t.Errorf("mutate not applied: %+v", got)
			}
			st, err := wire.ReadStateFile(r.stateDir, "c1")
			switch {
			case tc.file == "" && !os.IsNotExist(err):
				t.Errorf("state file written: %+v, %v", st, err)
			case tc.file != "" && (err != nil || st.Status != tc.file):
				t.Errorf("state file %+v, %v; want status %s", st, err, tc.file)
			}
			select {
			case <-c.exited:
				if !tc.closed {
					t.Error("exited closed")
				}
			default:
				if tc.closed {
					t.Error("exited not closed")
				}
			}
		})
	}
}

func TestKnownStatus(t *testing.T) {
	for _, tc := range []struct {
		status string
		want   bool
	}{{wire.StatusCreated, true}, {wire.StatusRunning, true}, {wire.StatusExited, true}, {"", false}, {"paused", false}} {
		t.Run(tc.status, func(t *testing.T) {
			if got := knownStatus(tc.status); got != tc.want {
				t.Fatalf("knownStatus(%q) = %v", tc.status, got)
			}
		})
	}
}
