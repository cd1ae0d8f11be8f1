package main

import (
	"testing"
	"time"

	"github.com/noded-dev/noded/conmon-go/internal/helperapi"
)

func TestStartsAhead(t *testing.T) {
	for _, tc := range []struct {
		name     string
		op       string
		warm     bool
		quitting bool
		since    time.Duration
		want     bool
	}{
		{"exec in a burst", helperapi.OpExec, false, false, 20 * time.Millisecond, true},
		{"exec just inside the burst", helperapi.OpExec, false, false, execBurst - time.Millisecond, true},
		{"lone exec", helperapi.OpExec, false, false, execBurst, false},
		{"first exec of the monitor", helperapi.OpExec, false, false, time.Since(time.Time{}), false},
		{"a helper is already warm", helperapi.OpExec, true, false, time.Millisecond, false},
		{"shutting down", helperapi.OpExec, false, true, time.Millisecond, false},
		{"create", helperapi.OpCreate, false, false, time.Millisecond, false},
		{"kill", helperapi.OpKill, false, false, time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startsAhead(tc.op, tc.warm, tc.quitting, tc.since); got != tc.want {
				t.Errorf("startsAhead(%s, warm %v, quitting %v, %s) = %v, want %v", tc.op, tc.warm, tc.quitting, tc.since, got, tc.want)
			}
		})
	}
}
