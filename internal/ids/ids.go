// Package ids defines noded's typed identifiers and the name registry that
// makes CRI names unique.
//
// Pod sandboxes and containers get 64-hex-digit random IDs, like containerd
// and CRI-O, so that crictl's prefix matching and log paths look familiar.
package ids

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"

	"github.com/noded-dev/noded/internal/errdefs"
)

// SandboxID identifies a pod sandbox.
type SandboxID string

// ContainerID identifies a container (the pause container of a sandbox has
// the sandbox's ID).
type ContainerID string

// NewSandboxID returns a fresh random sandbox ID.
func NewSandboxID() SandboxID { return SandboxID(random()) }

// NewContainerID returns a fresh random container ID.
func NewContainerID() ContainerID { return ContainerID(random()) }

func random() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on Linux
	}
	return hex.EncodeToString(b[:])
}

// Short is the first 12 characters, for logs and socket names.
func (id SandboxID) Short() string { return short(string(id)) }

// Short is the first 12 characters, for logs.
func (id ContainerID) Short() string { return short(string(id)) }

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// Names reserves unique names (the CRI's pod and container names, built
// from metadata) for a key (an ID). A name is reserved before anything is
// created and released when the object is removed or its create failed.
//
// Lock rule: mu guards both maps; no method calls out while holding it.
type Names struct {
	mu     sync.Mutex
	byName map[string]string
	byKey  map[string]string
}

// NewNames returns an empty registry.
func NewNames() *Names {
	return &Names{byName: map[string]string{}, byKey: map[string]string{}}
}

// Reserve reserves name for key. Reserving the same name for the same key
// again is a no-op; a name held by another key is AlreadyExists with the
// holder's ID in the message, as the kubelet expects.
func (n *Names) Reserve(name, key string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if holder, ok := n.byName[name]; ok {
		if holder == key {
			return nil
		}
		return errdefs.AlreadyExists("name %q is reserved for %q", name, holder)
	}
	n.byName[name] = key
	n.byKey[key] = name
	return nil
}

// Release frees the name held by key, if any.
func (n *Names) Release(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.byKey[key]; ok {
		delete(n.byKey, key)
		delete(n.byName, name)
	}
}

// Get returns the key holding name.
func (n *Names) Get(name string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	k, ok := n.byName[name]
	return k, ok
}

// Resolve finds the full ID among candidates from
// a unique prefix, as crictl users type short IDs.
func Resolve[T ~string](prefix string, candidates []T) (T, error) {
	var zero T
	if prefix == "" {
		return zero, errdefs.InvalidArgument("ID must not be empty")
	}
	var found T
	n := 0
	for _, c := range candidates {
		if strings.HasPrefix(string(c), prefix) {
			found = c
			n++
			if string(c) == prefix {
				return c, nil
			}
		}
	}
	switch n {
	case 0:
		return zero, errdefs.NotFound("no object with ID %q", prefix)
	case 1:
		return found, nil
	default:
		return zero, errdefs.InvalidArgument("ID prefix %q is ambiguous", prefix)
	}
}
