package imagesvc

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestGroupJoinsConcurrentWork(t *testing.T) {
	var wg sync.WaitGroup
	var runs atomic.Int32
	release := make(chan struct{})
	g := newGroup[string, int](context.Background(), &wg, false, nil)
	fn := func(context.Context) (int, error) {
		runs.Add(1)
		<-release
		return 42, nil
	}
	var waiters sync.WaitGroup
	results := make([]int, 10)
	for i := range results {
		waiters.Add(1)
		go func() {
			defer waiters.Done()
			v, rel, _, err := g.do(context.Background(), "k", fn)
			defer rel()
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		}()
	}
	for g.inFlight() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	waiters.Wait()
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Errorf("work ran %d times, want 1", n)
	}
	for i, v := range results {
		if v != 42 {
			t.Errorf("waiter %d got %d", i, v)
		}
	}
	// Done work frees the key: the next join runs again.
	if _, rel, started, _ := g.do(context.Background(), "k", func(context.Context) (int, error) { return 1, nil }); !started {
		t.Error("a join after completion did not start new work")
	} else {
		rel()
	}
}

func TestGroupWaiterLeavesWorkGoesOn(t *testing.T) {
	for _, abandon := range []bool{false, true} {
		name := "runs to its end"
		if abandon {
			name = "abandoned work is cancelled"
		}
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			var freed atomic.Int32
			g := newGroup[string, int](context.Background(), &wg, abandon, func(int) { freed.Add(1) })
			release := make(chan struct{})
			finished := make(chan error, 1)
			fn := func(ctx context.Context) (int, error) {
				select {
				case <-release:
					finished <- nil
					return 1, nil
				case <-ctx.Done():
					finished <- context.Cause(ctx)
					return 0, context.Cause(ctx)
				}
			}
			// Two waiters; the first leaves, the second stays.
			ctx1, cancel1 := context.WithCancel(context.Background())
			c1, _ := g.join(context.Background(), "k", fn)
			c2, _ := g.join(context.Background(), "k", fn)
			cancel1()
			if _, err := c1.wait(ctx1); !errors.Is(err, context.Canceled) {
				t.Fatalf("leaving waiter got %v", err)
			}
			c1.release()
			close(release)
			if v, err := c2.wait(context.Background()); err != nil || v != 1 {
				t.Fatalf("staying waiter got %d, %v", v, err)
			}
			c2.release()
			wg.Wait()
			if freed.Load() != 1 {
				t.Errorf("result freed %d times, want 1", freed.Load())
			}

			// Now every waiter leaves.
			release2 := make(chan struct{})
			fn2 := func(ctx context.Context) (int, error) {
				select {
				case <-release2:
					return 2, nil
				case <-ctx.Done():
					return 0, context.Cause(ctx)
				}
			}
			c3, _ := g.join(context.Background(), "k2", fn2)
			c3.release()
			if abandon {
				wg.Wait() // cancelled, so it ends without release2
				if g.inFlight() != 0 {
					t.Error("abandoned work still in flight")
				}
			} else {
				time.Sleep(20 * time.Millisecond)
				if g.inFlight() != 1 {
					t.Error("work without waiters was cancelled")
				}
				close(release2)
				wg.Wait()
				if freed.Load() != 2 {
					t.Errorf("the result of work without waiters was not freed")
				}
			}
		})
	}
}

func TestGroupErrorReachesEveryWaiter(t *testing.T) {
	var wg sync.WaitGroup
	g := newGroup[string, int](context.Background(), &wg, false, func(int) { t.Error("freed a failed result") })
	boom := errors.New("boom")
	release := make(chan struct{})
	fn := func(context.Context) (int, error) { <-release; return 0, boom }
	calls := []*call[string, int]{}
	for i := 0; i < 5; i++ {
		c, _ := g.join(context.Background(), "k", fn)
		calls = append(calls, c)
	}
	close(release)
	for _, c := range calls {
		if _, err := c.wait(context.Background()); !errors.Is(err, boom) {
			t.Errorf("got %v", err)
		}
		c.release()
	}
	wg.Wait()
}

// A panic in shared work reaches every waiter as an error, through both
// wait and waitPublished; noded survives it, and the key works again.
func TestGroupPanicReachesEveryWaiter(t *testing.T) {
	tests := []struct {
		desc  string
		value any
		want  string
	}{
		{desc: "string", value: "index out of range", want: "index out of range"},
		{desc: "error", value: errors.New("nil map"), want: "nil map"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var wg sync.WaitGroup
			var freed []int
			var freedMu sync.Mutex
			g := newGroup[string, int](context.Background(), &wg, false, func(v int) {
				freedMu.Lock()
				defer freedMu.Unlock()
				freed = append(freed, v)
			})
			release := make(chan struct{})
			var runs atomic.Int32
			fn := func(context.Context) (int, error) {
				runs.Add(1)
				<-release
				panic(tt.value)
			}
			const waiters = 5
			errs := make(chan error, waiters)
			var joined sync.WaitGroup
			for i := range waiters {
				joined.Add(1)
				go func() {
					c, _ := g.join(context.Background(), "k", fn)
					joined.Done()
					defer c.release()
					var err error
					if i%2 == 0 {
						_, err = c.wait(context.Background())
					} else {
						_, err = c.waitPublished(context.Background())
					}
					errs <- err
				}()
			}
			joined.Wait()
			close(release)
			for range waiters {
				err := <-errs
				if !errors.Is(err, errPanicked) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("waiter got %v, want errPanicked with %q", err, tt.want)
				}
				if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) || errdefs.IsContextError(err) {
					t.Errorf("panic error has a class: %v", err)
				}
			}
			wg.Wait()
			if n := runs.Load(); n != 1 {
				t.Errorf("work ran %d times, want 1", n)
			}
			if g.inFlight() != 0 {
				t.Fatal("the key is still in flight after the panic")
			}
			v, rel, started, err := g.do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil })
			if err != nil || v != 7 || !started {
				t.Fatalf("after the panic: %d, started %v, %v", v, started, err)
			}
			rel()
			wg.Wait()
			if len(freed) != 1 || freed[0] != 7 {
				t.Errorf("freed %v, want only the later result [7]", freed)
			}
		})
	}
}
