// Package callend runs work when a gRPC call is over: after its answer
// was handed to the transport, not when its handler returns. A handler's
// answer can hold a lot of memory (an ExecSync's 16 MiB of output, and
// its encoded copy) until gRPC has sent it; a limit on such answers that
// is given back when the handler returns bounds nothing, since the
// answers pile up behind it. The cri package's stats handler marks each
// call (With) and runs its hooks at its end (Run); domain code that holds
// a budget registers its release with Defer.
package callend

import (
	"context"
	"sync"
)

type key struct{}

// hooks are one call's end hooks. Lifecycle: made by With when the call
// starts, filled by Defer while it runs, emptied once by Run at its end; a
// Defer after Run runs its function at once.
type hooks struct {
	mu   sync.Mutex
	fns  []func()
	done bool
}

// With returns ctx marked as a call whose end hooks Run will run.
func With(ctx context.Context) context.Context {
	return context.WithValue(ctx, key{}, &hooks{})
}

// Defer registers fn to run when the call of ctx is over. Without a call
// mark it registers nothing and returns false: the caller runs fn itself.
func Defer(ctx context.Context, fn func()) bool {
	h, ok := ctx.Value(key{}).(*hooks)
	if !ok {
		return false
	}
	h.mu.Lock()
	if h.done {
		h.mu.Unlock()
		fn()
		return true
	}
	h.fns = append(h.fns, fn)
	h.mu.Unlock()
	return true
}

// Run runs the hooks of the call of ctx, last registered first.
func Run(ctx context.Context) {
	h, ok := ctx.Value(key{}).(*hooks)
	if !ok {
		return
	}
	h.mu.Lock()
	fns := h.fns
	h.fns, h.done = nil, true
	h.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
