package admit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitQueued waits until n waiters are queued.
func waitQueued(t *testing.T, g *Gate, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		got := g.waiters()
		g.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOrder(t *testing.T) {
	tests := []struct {
		desc    string
		arrival []Class
		want    []int // indexes of arrival, in admission order
	}{
		{desc: "one class: first come, first served",
			arrival: []Class{Sandbox, Sandbox, Sandbox}, want: []int{0, 1, 2}},
		{desc: "containers go before sandboxes that waited longer",
			arrival: []Class{Sandbox, Sandbox, Container, Sandbox, Container}, want: []int{2, 4, 0, 1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := New(1, 0)
			hold, err := g.Enter(context.Background(), Sandbox)
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu  sync.Mutex
				got []int
				wg  sync.WaitGroup
			)
			for i, c := range tt.arrival {
				wg.Add(1)
				go func() {
					defer wg.Done()
					leave, err := g.Enter(context.Background(), c)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got = append(got, i)
					mu.Unlock()
					leave()
				}()
				waitQueued(t, g, i+1) // arrival order is the loop's
			}
			hold()
			wg.Wait()
			for i := range tt.want {
				if i >= len(got) || got[i] != tt.want[i] {
					t.Fatalf("admitted %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestCancelledWaiterHoldsNothing(t *testing.T) {
	g := New(1, 0)
	hold, _ := g.Enter(context.Background(), Sandbox)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := g.Enter(ctx, Container)
		errc <- err
	}()
	waitQueued(t, g, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Enter: %v", err)
	}
	hold()
	// The slot is free again: a new holder gets it at once.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	leave, err := g.Enter(ctx2, Sandbox)
	if err != nil {
		t.Fatalf("slot lost after a cancelled waiter: %v", err)
	}
	leave()
	leave() // a second call gives back nothing more
	if g.free != 1 {
		t.Fatalf("free %d after leave twice, want 1", g.free)
	}
}

func TestAtMostN(t *testing.T) {
	const n = 3
	g := New(n, 0)
	var in, peak atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%4)*time.Millisecond+time.Millisecond)
			defer cancel()
			leave, err := g.Enter(ctx, Class(i%2))
			if err != nil {
				return // some give up: that must not leak slots
			}
			if v := in.Add(1); v > peak.Load() {
				peak.Store(v)
			}
			time.Sleep(time.Millisecond)
			in.Add(-1)
			leave()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > n {
		t.Fatalf("%d holders at once, limit %d", p, n)
	}
	if g.free != n || g.waiters() != 0 {
		t.Fatalf("after all left: free %d, waiters %d; want %d, 0", g.free, g.waiters(), n)
	}
}

func TestLeaseRunsOut(t *testing.T) {
	g := New(1, 20*time.Millisecond)
	leave, _ := g.Enter(context.Background(), Sandbox) // a slow holder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	next, err := g.Enter(ctx, Sandbox)
	if err != nil {
		t.Fatalf("a holder past its lease still blocks: %v", err)
	}
	leave() // the slow holder is done: nothing more is given back
	next()
	if g.free != 1 {
		t.Fatalf("free %d, want 1", g.free)
	}
}
