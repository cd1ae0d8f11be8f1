// Package kmutex is a mutex per key (a pod, a container) whose entries are
// freed when nobody holds or waits for them, so it does not grow with pod
// churn on a long-running node.
package kmutex

import (
	"context"
	"sync"
)

// KeyedMutex serialises callers per key. The zero value is ready to use.
//
// Lock rule: mu guards locks and the reference counts; it is never held
// while waiting for a key's mutex.
type KeyedMutex[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*entry
}

// entry is one key's mutex: a one-slot channel, so that a waiter can give
// up when its context ends (sync.Mutex cannot be abandoned).
type entry struct {
	held chan struct{}
	refs int
}

// Lock waits for key and returns the function that releases it. It gives
// up with ctx's error when ctx ends first: a request whose caller went
// away (the kubelet's RPC deadline) stops queueing behind a slow one.
func (k *KeyedMutex[K]) Lock(ctx context.Context, key K) (unlock func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[K]*entry{}
	}
	e, ok := k.locks[key]
	if !ok {
		e = &entry{held: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()

	select {
	case e.held <- struct{}{}:
	case <-ctx.Done():
		k.release(key, e)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.held
			k.release(key, e)
		})
	}, nil
}

// release drops one reference to key's entry and frees it at zero.
func (k *KeyedMutex[K]) release(key K, e *entry) {
	k.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(k.locks, key)
	}
	k.mu.Unlock()
}

// Len is the number of keys held or waited for.
func (k *KeyedMutex[K]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}
