package main

import (
	"sync"
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

// A warm helper that exits by itself (it waited in vain: the pod's first
// container is still waiting for its image) is reaped outside any call,
// and that reaping maps code back: it must schedule a trim, or the code
// stays mapped until an operation comes, if one ever does; but no
// collection, which would itself leave memory behind.
func TestHelperExitSchedulesTrim(t *testing.T) {
	var opMu sync.Mutex
	r := newReaper(&opMu, newLogger("error"))
	r.start()
	defer r.stop()
	dropped := make(chan struct{}, 1)
	trim := &trimmer{free: func() { t.Error("an idle monitor's collection leaves memory behind: reaping must not collect") }, drop: func() { dropped <- struct{}{} }}
	p := newHelperPool("/bin/true", "", t.TempDir(), "error", &opMu, r, trim, newLogger("error"))

	// /bin/true stands in for a warm helper whose idle limit passed.
	p.withOpMu(func() { p.spawnWarm("starting a helper that exits") })
	p.opMu.Lock()
	h := p.warm
	p.opMu.Unlock()
	if h == nil {
		t.Fatal("no helper was started")
	}
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the helper was not reaped")
	}
	select {
	case <-dropped:
	case <-time.After(10 * trimDelay):
		t.Fatal("reaping a helper that exited by itself scheduled no trim")
	}
	p.stop()
}

// A trim collects only if a call asked for it since the last trim; the
// code's mappings are dropped by every trim.
func TestTrimmerMergesRequests(t *testing.T) {
	for _, tc := range []struct {
		name      string
		calls     []bool // true: schedule (a call), false: scheduleCode (the reaper)
		wantHeaps int
	}{
		{"a call", []bool{true}, 1},
		{"the reaper alone", []bool{false}, 0},
		{"the reaper after a call", []bool{true, false}, 1},
		{"a call after the reaper", []bool{false, true}, 1},
		{"a burst of calls", []bool{true, true, true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			heaps, drops := 0, 0
			dropped := make(chan struct{}, 1)
			trim := &trimmer{
				free: func() { mu.Lock(); heaps++; mu.Unlock() },
				drop: func() { mu.Lock(); drops++; mu.Unlock(); dropped <- struct{}{} },
			}
			for _, heap := range tc.calls {
				if heap {
					trim.schedule()
				} else {
					trim.scheduleCode()
				}
			}
			select {
			case <-dropped:
			case <-time.After(10 * trimDelay):
				t.Fatal("no trim ran")
			}
			mu.Lock()
			defer mu.Unlock()
			if heaps != tc.wantHeaps || drops != 1 {
				t.Errorf("%d collections and %d drops, want %d and 1", heaps, drops, tc.wantHeaps)
			}
		})
	}
}
