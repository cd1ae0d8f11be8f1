package kmutex

import (
	"sync"
	"testing"
)

func TestSerialisesPerKeyAndFreesEntries(t *testing.T) {
	var k KeyedMutex[string]
	var wg sync.WaitGroup
	// Read-only map of per-key counters: only the increments need the lock.
	counts := map[string]*int{"a": new(int), "b": new(int)}
	for i := range 200 {
		key := []string{"a", "b"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := k.Lock(key)
			*counts[key]++ // a data race (caught by -race) if a key were not exclusive
			unlock()
		}()
	}
	wg.Wait()
	if *counts["a"] != 100 || *counts["b"] != 100 {
		t.Fatalf("counts a=%d b=%d", *counts["a"], *counts["b"])
	}
	if n := k.Len(); n != 0 {
		t.Fatalf("%d entries left after every unlock", n)
	}
}

func TestDifferentKeysDoNotBlock(t *testing.T) {
	var k KeyedMutex[int]
	unlockA := k.Lock(1)
	unlockB := k.Lock(2) // would deadlock if keys shared a mutex
	unlockB()
	unlockA()
}
