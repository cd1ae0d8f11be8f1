package kmutex

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func lock[K comparable](t *testing.T, k *KeyedMutex[K], key K) func() {
	t.Helper()
	unlock, err := k.Lock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return unlock
}

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
			unlock := lock(t, &k, key)
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
	unlockA := lock(t, &k, 1)
	unlockB := lock(t, &k, 2) // would deadlock if keys shared a mutex
	unlockB()
	unlockA()
}

func TestWaiterGivesUpWithItsContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k KeyedMutex[string]
			unlock := lock(t, &k, "pod")
			ctx, cancel := tt.ctx()
			defer cancel()
			if _, err := k.Lock(ctx, "pod"); !errors.Is(err, tt.want) {
				t.Fatalf("Lock = %v, want %v", err, tt.want)
			}
			// The holder is unaffected, and the key is freed at the end.
			unlock()
			unlock() // a second call is a no-op
			if n := k.Len(); n != 0 {
				t.Fatalf("%d entries left", n)
			}
			lock(t, &k, "pod")()
		})
	}
}
