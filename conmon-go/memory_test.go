package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

// Without a GC percentage the memory limit is the only automatic trigger:
// a monitor that allocates without a call (a container printing very
// long lines) must still be collected, and stay near the limit.
func TestMemoryPolicyCollectsAtTheLimit(t *testing.T) {
	// Go's defaults first, so that the checks below see what
	// setMemoryPolicy set.
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	setMemoryPolicy()
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GC percent %d, want -1 (no collection on heap growth)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != monitorMemoryLimit {
		t.Fatalf("memory limit %d, want %d", got, monitorMemoryLimit)
	}
	runtime.GC()
	before := gcCycles(t)
	var sink []byte
	for range 64 << 20 >> 14 { // 64 MiB of garbage, 16 KiB at a time
		sink = make([]byte, 16<<10)
		sink[0] = 1
	}
	_ = sink
	if gcCycles(t) == before {
		t.Fatal("no collection while 64 MiB of garbage was allocated under an 8 MiB limit")
	}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if live := s[0].Value.Uint64(); live > 2*monitorMemoryLimit {
		t.Fatalf("heap objects %d bytes after the allocations, want at most %d", live, 2*monitorMemoryLimit)
	}
}

func gcCycles(t *testing.T) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
