// Package state keeps noded's pod and container records: in memory for
// fast reads, and on disk (one JSON file per object under the state dir) so
// that a restarted noded, even after kill -9, knows every pod and container.
//
// Records change only through UpdateSandbox / UpdateContainer, which apply a
// function to a copy, check the state transition, write the file atomically
// (internal/atomicfile: temp file, fsync, rename, directory fsync) and only
// then publish the new record. A reader therefore never sees a state that is
// not on disk, with one exception: a container's exit, which
// RecordContainerExit publishes before its file is written, because a
// restarted noded learns the exit again from the container's monitor (see
// there).
//
// Sandboxes and containers are kept by one generic table (table.go); this
// file is the Store's API over the two tables and the checks that span
// both (a container needs its sandbox, a sandbox with containers stays).
//
// Lock rule: mu guards both tables and is held across the file write of an
// update, so updates are serialised; the update functions must not call
// back into the Store. wmu orders the files: every change of a record file
// takes it under mu (lock) and holds it until the file is written, so the
// files change in the order of the changes in memory, also when
// RecordContainerExit writes after releasing mu. Long operations (stopping
// a container) are not done under mu: services hold their own per-object
// locks around them.
package state

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

// Store is the set of records.
//
// Besides the records, it keeps the pending ones: a create that makes
// things on the host (RunPodSandbox, CreateContainer) first writes the
// record it will add as pending, and drops it once the real record is
// written or its rollback has run. A pending record found at start-up is
// a create that was killed half-way (SIGKILL, a crash, a power cut):
// recovery removes what it may have made, from the IDs and paths in it.
type Store struct {
	mu sync.RWMutex
	// wmu is held from a change in memory to the end of its file's write
	// (lock rule above); taken after mu, never alone.
	wmu               sync.Mutex
	sandboxes         *table[ids.SandboxID, Sandbox]
	containers        *table[ids.ContainerID, Container]
	pendingSandboxes  *table[ids.SandboxID, Sandbox]
	pendingContainers *table[ids.ContainerID, Container]
	// byPod indexes containers by sandbox (a container never changes
	// sandbox: checkContainerUpdate), so that a pod's containers are
	// found without copying every record; under mu, kept by AddContainer
	// and DeleteContainer.
	byPod map[ids.SandboxID]map[ids.ContainerID]struct{}
}

// The two kinds of record. Their state checks are in status.go, their file
// format in records.go.
var (
	sandboxKind = kind[ids.SandboxID, Sandbox]{
		subdir: "sandboxes", noun: "sandbox", lookupNoun: "pod sandbox",
		id:          func(sb *Sandbox) ids.SandboxID { return sb.ID },
		created:     func(sb *Sandbox) int64 { return sb.CreatedAt },
		clone:       cloneSandbox,
		marshal:     (*Sandbox).marshal,
		unmarshal:   unmarshalSandbox,
		valid:       func(sb *Sandbox) error { return validSandboxState(sb.State) },
		checkUpdate: checkSandboxUpdate,
	}
	containerKind = kind[ids.ContainerID, Container]{
		subdir: "containers", noun: "container", lookupNoun: "container",
		id:          func(c *Container) ids.ContainerID { return c.ID },
		created:     func(c *Container) int64 { return c.CreatedAt },
		clone:       cloneContainer,
		marshal:     (*Container).marshal,
		unmarshal:   unmarshalContainer,
		valid:       func(c *Container) error { return validContainerState(c.State) },
		checkUpdate: checkContainerUpdate,
	}
	pendingSandboxKind   = pending(sandboxKind, "pending/sandboxes")
	pendingContainerKind = pending(containerKind, "pending/containers")
)

// pending is the kind of the pending records of k: the same files, in
// their own directory, never updated.
func pending[ID ~string, R any](k kind[ID, R], subdir string) kind[ID, R] {
	k.subdir = subdir
	k.noun = "pending " + k.noun
	k.checkUpdate = nil
	return k
}

// Open loads every record under dir (creating it if needed). Files that
// cannot be parsed are moved aside with a ".corrupt" suffix and reported in
// the returned warnings rather than failing start-up: one bad file must not
// keep a node from running its other pods.
func Open(dir string) (*Store, []error, error) {
	s := &Store{
		sandboxes:         newTable(&sandboxKind, dir),
		containers:        newTable(&containerKind, dir),
		pendingSandboxes:  newTable(&pendingSandboxKind, dir),
		pendingContainers: newTable(&pendingContainerKind, dir),
	}
	var warnings []error
	for _, load := range []func() ([]error, error){s.sandboxes.load, s.containers.load, s.pendingSandboxes.load, s.pendingContainers.load} {
		w, err := load()
		if err != nil {
			return nil, nil, err
		}
		warnings = append(warnings, w...)
	}
	s.byPod = map[ids.SandboxID]map[ids.ContainerID]struct{}{}
	for id, c := range s.containers.recs {
		s.indexLocked(c.SandboxID, id)
	}
	return s, warnings, nil
}

// indexLocked adds a container to byPod; the caller holds mu.
func (s *Store) indexLocked(pod ids.SandboxID, id ids.ContainerID) {
	if s.byPod[pod] == nil {
		s.byPod[pod] = map[ids.ContainerID]struct{}{}
	}
	s.byPod[pod][id] = struct{}{}
}

// lock takes mu and wmu for a change of a record and its file; the
// returned function releases both.
func (s *Store) lock() (unlock func()) {
	s.mu.Lock()
	s.wmu.Lock()
	return func() {
		s.wmu.Unlock()
		s.mu.Unlock()
	}
}

// BeginSandbox writes sb as pending: the record a create is about to
// make. EndSandbox drops it.
func (s *Store) BeginSandbox(sb *Sandbox) error {
	defer s.lock()()
	return s.pendingSandboxes.add(sb)
}

// EndSandbox drops the pending record of a create that is over (its
// record was added, or its rollback has run); unknown IDs are fine.
func (s *Store) EndSandbox(id ids.SandboxID) error {
	defer s.lock()()
	return s.pendingSandboxes.delete(id)
}

// PendingSandboxes returns the pending sandbox records, oldest first.
func (s *Store) PendingSandboxes() []*Sandbox {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pendingSandboxes.list()
}

// BeginContainer is BeginSandbox for containers.
func (s *Store) BeginContainer(c *Container) error {
	defer s.lock()()
	return s.pendingContainers.add(c)
}

// EndContainer is EndSandbox for containers.
func (s *Store) EndContainer(id ids.ContainerID) error {
	defer s.lock()()
	return s.pendingContainers.delete(id)
}

// PendingContainers returns the pending container records, oldest first.
func (s *Store) PendingContainers() []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pendingContainers.list()
}

// AddSandbox records a new sandbox; its ID must be new.
func (s *Store) AddSandbox(sb *Sandbox) error {
	if err := validSandboxState(sb.State); err != nil {
		return err
	}
	defer s.lock()()
	return s.sandboxes.add(sb)
}

// AddContainer records a new container; its sandbox must exist.
func (s *Store) AddContainer(c *Container) error {
	if err := validContainerState(c.State); err != nil {
		return err
	}
	defer s.lock()()
	if err := s.containers.add(c, func() error {
		if !s.sandboxes.has(c.SandboxID) {
			return errdefs.NotFound("sandbox %s not found", c.SandboxID)
		}
		return nil
	}); err != nil {
		return err
	}
	s.indexLocked(c.SandboxID, c.ID)
	return nil
}

// Sandbox returns a copy of the record.
func (s *Store) Sandbox(id ids.SandboxID) (*Sandbox, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.get(id)
}

// Container returns a copy of the record.
func (s *Store) Container(id ids.ContainerID) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.get(id)
}

// Sandboxes returns copies of all sandbox records, oldest first.
func (s *Store) Sandboxes() []*Sandbox {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.list()
}

// Containers returns copies of all container records, oldest first.
func (s *Store) Containers() []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.list()
}

// SandboxIDs returns every sandbox ID, without copying records.
func (s *Store) SandboxIDs() []ids.SandboxID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.ids()
}

// ContainerIDs returns every container ID, without copying records.
func (s *Store) ContainerIDs() []ids.ContainerID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.ids()
}

// HasSandbox reports whether a sandbox with exactly this ID exists.
func (s *Store) HasSandbox(id ids.SandboxID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sandboxes.has(id)
}

// HasContainer reports whether a container with exactly this ID exists.
func (s *Store) HasContainer(id ids.ContainerID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.containers.has(id)
}

// SandboxIDsOldestFirst returns every sandbox ID, oldest sandbox first
// (ties by ID, the order of Sandboxes), without copying records.
func (s *Store) SandboxIDsOldestFirst() []ids.SandboxID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := s.sandboxes.ids()
	slices.SortFunc(out, func(a, b ids.SandboxID) int {
		return cmp.Or(cmp.Compare(s.sandboxes.recs[a].CreatedAt, s.sandboxes.recs[b].CreatedAt), strings.Compare(string(a), string(b)))
	})
	return out
}

// SandboxContainers returns copies of the containers of one sandbox,
// oldest first; only those are copied (byPod).
func (s *Store) SandboxContainers(id ids.SandboxID) []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Container
	for cid := range s.byPod[id] {
		if c, err := s.containers.get(cid); err == nil {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *Container) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(string(a.ID), string(b.ID)))
	})
	return out
}

// UpdateSandbox applies fn to a copy of the record, checks the state
// transition, persists it and publishes it. fn must not call the Store.
func (s *Store) UpdateSandbox(id ids.SandboxID, fn func(*Sandbox) error) (*Sandbox, error) {
	defer s.lock()()
	return s.sandboxes.update(id, fn)
}

// UpdateContainer is UpdateSandbox for containers.
func (s *Store) UpdateContainer(id ids.ContainerID, fn func(*Container) error) (*Container, error) {
	defer s.lock()()
	return s.containers.update(id, fn)
}

// RecordContainerExit is UpdateContainer for the update that records a
// container's exit, published before it is on disk: the new record is
// what Container, ContainerStatus and the lists read as soon as this
// returns, so that the exit's STOPPED event and status do not wait for
// the file's two fsyncs; the file is written meanwhile, and written must
// be called (it returns the write's error) once the caller has published.
// The write runs on its own, holding wmu (taken here under mu), so any
// later change of the record or its file (a removal) waits for it, and
// nothing the caller does while it runs can block it.
//
// Why an exit may be seen before it is written, although a kill -9 at any
// moment must lose nothing: noded's record is not where an exit is kept
// first. The pod's monitor has it (in its memory, and in its state file,
// which it writes as soon as it sees the exit), and a noded restarted
// after a kill finds any record still recorded as running and records
// the monitor's exit then, with its real exit code, and replays its
// STOPPED event (sandbox.Containers.recover). A kill after the event went
// out but before the file was written therefore loses nothing; the
// kubelet may get that STOPPED event a second time after the restart,
// which it takes as a status it already has. A write that fails leaves
// the exit in memory only, ahead of the file (logged by the caller): the
// next write of the record, or a restart's recovery, catches the file up.
func (s *Store) RecordContainerExit(id ids.ContainerID, fn func(*Container) error) (_ *Container, written func() error, _ error) {
	s.mu.Lock()
	next, err := s.containers.prepare(id, fn)
	if err == nil && next.State != ContainerExited {
		// Only an exit is re-derived at a restart (above).
		err = fmt.Errorf("container %s: RecordContainerExit records an exit, not %q", id, next.State)
	}
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	s.wmu.Lock()
	s.containers.recs[id] = next
	s.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		defer s.wmu.Unlock()
		done <- s.containers.write(next)
	}()
	return cloneContainer(next), sync.OnceValue(func() error { return <-done }), nil
}

// DeleteSandbox removes the record; it must have no containers left.
// Deleting an unknown sandbox is not an error (removes are idempotent).
func (s *Store) DeleteSandbox(id ids.SandboxID) error {
	defer s.lock()()
	if cids := s.byPod[id]; len(cids) > 0 {
		return errdefs.FailedPrecondition("sandbox %s still has container %s", id, slices.Min(slices.Collect(maps.Keys(cids))))
	}
	return s.sandboxes.delete(id)
}

// DeleteContainer removes the record; unknown IDs are not an error.
func (s *Store) DeleteContainer(id ids.ContainerID) error {
	defer s.lock()()
	c, ok := s.containers.recs[id]
	if err := s.containers.delete(id); err != nil {
		return err
	}
	if ok {
		delete(s.byPod[c.SandboxID], id)
		if len(s.byPod[c.SandboxID]) == 0 {
			delete(s.byPod, c.SandboxID)
		}
	}
	return nil
}

// cloneSandbox copies everything a caller could change in place; Config is
// shared, as the kubelet's request is never modified.
func cloneSandbox(s *Sandbox) *Sandbox {
	c := *s
	c.IPs = slices.Clone(s.IPs)
	return &c
}

// cloneContainer is cloneSandbox for containers.
func cloneContainer(s *Container) *Container {
	c := *s
	c.User.AdditionalGIDs = slices.Clone(s.User.AdditionalGIDs)
	return &c
}
