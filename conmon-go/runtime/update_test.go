package main

import (
	"testing"

	"github.com/opencontainers/cgroups"
)

// A resize that lowers a limit below what the container uses now is
// refused before anything is written; at or above the usage, or raising,
// it goes through.
func TestCheckMemoryUsage(t *testing.T) {
	const usage, swapUsage = 40 << 20, 48 << 20
	for _, tc := range []struct {
		name       string
		cur, next  cgroups.Resources
		lowers, ok bool
	}{
		{"raise", cgroups.Resources{Memory: 64 << 20}, cgroups.Resources{Memory: 128 << 20}, false, true},
		{"lower above usage", cgroups.Resources{Memory: 64 << 20}, cgroups.Resources{Memory: 48 << 20, MemorySwap: 48 << 20}, true, true},
		{"lower to the usage", cgroups.Resources{Memory: 64 << 20}, cgroups.Resources{Memory: 40 << 20, MemorySwap: 64 << 20}, true, true},
		{"lower below usage", cgroups.Resources{Memory: 64 << 20}, cgroups.Resources{Memory: 32 << 20}, true, false},
		{"limit an unlimited one below usage", cgroups.Resources{Memory: -1}, cgroups.Resources{Memory: 4 << 20}, true, false},
		{"memory+swap below its usage", cgroups.Resources{Memory: 64 << 20, MemorySwap: 128 << 20}, cgroups.Resources{Memory: 44 << 20, MemorySwap: 44 << 20}, true, false},
		{"unchanged", cgroups.Resources{Memory: 64 << 20, MemorySwap: 64 << 20}, cgroups.Resources{Memory: 64 << 20, MemorySwap: 64 << 20}, false, true},
		{"to no limit", cgroups.Resources{Memory: 64 << 20}, cgroups.Resources{Memory: -1, MemorySwap: -1}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := lowersMemory(&tc.next, &tc.cur); got != tc.lowers {
				t.Errorf("lowersMemory = %v, want %v", got, tc.lowers)
			}
			err := checkMemoryUsage(&tc.next, usage, swapUsage)
			if (err == nil) != tc.ok {
				t.Errorf("checkMemoryUsage = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
