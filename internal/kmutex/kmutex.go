// Package kmutex is a mutex per key (a pod, a container) whose entries are
// freed when nobody holds or waits for them, so it does not grow with pod
// churn on a long-running node.
package kmutex

import "sync"

// KeyedMutex serialises callers per key. The zero value is ready to use.
//
// Lock rule: mu guards locks and the reference counts; it is never held
// while waiting for a key's mutex.
type KeyedMutex[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*entry
}

type entry struct {
	sync.Mutex
	refs int
}

// Lock waits for key and returns the function that releases it.
func (k *KeyedMutex[K]) Lock(key K) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[K]*entry{}
	}
	e, ok := k.locks[key]
	if !ok {
		e = &entry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()

	e.Lock()
	return func() {
		e.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// Len is the number of keys held or waited for.
func (k *KeyedMutex[K]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.locks)
}
