// Package state keeps noded's pod and container records: in memory for
// fast reads, and on disk (one JSON file per object under the state dir) so
// that a restarted noded, even after kill -9, knows every pod and container.
//
// Records change only through UpdateSandbox / UpdateContainer, which apply a
// function to a copy, check the state transition, write the file atomically
// (temp file, fsync, rename) and only then publish the new record. A reader
// therefore never sees a state that is not on disk.
//
// Lock rule: mu guards the maps and is held across the file write of an
// update, so updates are serialised; the update functions must not call
// back into the Store. Long operations (stopping a container) are not done
// under mu: services hold their own per-object locks around them.
package state

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

// Store is the set of records.
type Store struct {
	dir string

	mu         sync.RWMutex
	sandboxes  map[ids.SandboxID]*Sandbox
	containers map[ids.ContainerID]*Container
}

// Open loads every record under dir (creating it if needed). Files that
// cannot be parsed are moved aside with a ".corrupt" suffix and reported in
// the returned warnings rather than failing start-up: one bad file must not
// keep a node from running its other pods.
func Open(dir string) (*Store, []error, error) {
	s := &Store{dir: dir, sandboxes: map[ids.SandboxID]*Sandbox{}, containers: map[ids.ContainerID]*Container{}}
	for _, sub := range []string{"sandboxes", "containers"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, nil, err
		}
	}
	var warnings []error
	load := func(sub string, add func([]byte) error) error {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			if !strings.HasSuffix(name, ".json") {
				continue
			}
			path := filepath.Join(dir, sub, name)
			b, err := os.ReadFile(path)
			if err == nil {
				err = add(b)
			}
			if err != nil {
				warnings = append(warnings, fmt.Errorf("%s: %w (moved aside)", path, err))
				_ = os.Rename(path, path+".corrupt")
			}
		}
		return nil
	}
	if err := load("sandboxes", func(b []byte) error {
		sb, err := unmarshalSandbox(b)
		if err != nil {
			return err
		}
		if err := validSandboxState(sb.State); err != nil {
			return err
		}
		s.sandboxes[sb.ID] = sb
		return nil
	}); err != nil {
		return nil, nil, err
	}
	if err := load("containers", func(b []byte) error {
		c, err := unmarshalContainer(b)
		if err != nil {
			return err
		}
		if err := validContainerState(c.State); err != nil {
			return err
		}
		s.containers[c.ID] = c
		return nil
	}); err != nil {
		return nil, nil, err
	}
	return s, warnings, nil
}

func (s *Store) sandboxPath(id ids.SandboxID) string {
	return filepath.Join(s.dir, "sandboxes", string(id)+".json")
}

func (s *Store) containerPath(id ids.ContainerID) string {
	return filepath.Join(s.dir, "containers", string(id)+".json")
}

// AddSandbox records a new sandbox; its ID must be new.
func (s *Store) AddSandbox(sb *Sandbox) error {
	if err := validSandboxState(sb.State); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sandboxes[sb.ID]; ok {
		return errdefs.AlreadyExists("sandbox %s exists", sb.ID)
	}
	c := cloneSandbox(sb)
	if err := writeRecord(s.sandboxPath(sb.ID), c.marshal); err != nil {
		return err
	}
	s.sandboxes[sb.ID] = c
	return nil
}

// AddContainer records a new container; its sandbox must exist.
func (s *Store) AddContainer(c *Container) error {
	if err := validContainerState(c.State); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.containers[c.ID]; ok {
		return errdefs.AlreadyExists("container %s exists", c.ID)
	}
	if _, ok := s.sandboxes[c.SandboxID]; !ok {
		return errdefs.NotFound("sandbox %s not found", c.SandboxID)
	}
	cc := cloneContainer(c)
	if err := writeRecord(s.containerPath(c.ID), cc.marshal); err != nil {
		return err
	}
	s.containers[c.ID] = cc
	return nil
}

// Sandbox returns a copy of the record.
func (s *Store) Sandbox(id ids.SandboxID) (*Sandbox, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sb, ok := s.sandboxes[id]
	if !ok {
		return nil, errdefs.NotFound("pod sandbox %q not found", id)
	}
	return cloneSandbox(sb), nil
}

// Container returns a copy of the record.
func (s *Store) Container(id ids.ContainerID) (*Container, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, errdefs.NotFound("container %q not found", id)
	}
	return cloneContainer(c), nil
}

// Sandboxes returns copies of all sandbox records, oldest first.
func (s *Store) Sandboxes() []*Sandbox {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Sandbox, 0, len(s.sandboxes))
	for _, sb := range s.sandboxes {
		out = append(out, cloneSandbox(sb))
	}
	slices.SortFunc(out, func(a, b *Sandbox) int { return cmpCreated(a.CreatedAt, b.CreatedAt, string(a.ID), string(b.ID)) })
	return out
}

// Containers returns copies of all container records, oldest first.
func (s *Store) Containers() []*Container {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Container, 0, len(s.containers))
	for _, c := range s.containers {
		out = append(out, cloneContainer(c))
	}
	slices.SortFunc(out, func(a, b *Container) int { return cmpCreated(a.CreatedAt, b.CreatedAt, string(a.ID), string(b.ID)) })
	return out
}

// SandboxIDs returns every sandbox ID, without copying records.
func (s *Store) SandboxIDs() []ids.SandboxID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Keys(s.sandboxes))
}

// ContainerIDs returns every container ID, without copying records.
func (s *Store) ContainerIDs() []ids.ContainerID {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Collect(maps.Keys(s.containers))
}

// HasSandbox reports whether a sandbox with exactly this ID exists.
func (s *Store) HasSandbox(id ids.SandboxID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.sandboxes[id]
	return ok
}

// HasContainer reports whether a container with exactly this ID exists.
func (s *Store) HasContainer(id ids.ContainerID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.containers[id]
	return ok
}

// SandboxContainers returns copies of the containers of one sandbox.
func (s *Store) SandboxContainers(id ids.SandboxID) []*Container {
	var out []*Container
	for _, c := range s.Containers() {
		if c.SandboxID == id {
			out = append(out, c)
		}
	}
	return out
}

// UpdateSandbox applies fn to a copy of the record, checks the state
// transition, persists it and publishes it. fn must not call the Store.
func (s *Store) UpdateSandbox(id ids.SandboxID, fn func(*Sandbox) error) (*Sandbox, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.sandboxes[id]
	if !ok {
		return nil, errdefs.NotFound("pod sandbox %q not found", id)
	}
	next := cloneSandbox(cur)
	if err := fn(next); err != nil {
		return nil, err
	}
	if next.ID != cur.ID {
		return nil, errdefs.InvalidArgument("sandbox ID cannot change")
	}
	if err := checkTransition(cur.State, next.State, sandboxTransitions); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, err)
	}
	if err := writeRecord(s.sandboxPath(id), next.marshal); err != nil {
		return nil, err
	}
	s.sandboxes[id] = next
	return cloneSandbox(next), nil
}

// UpdateContainer is UpdateSandbox for containers.
func (s *Store) UpdateContainer(id ids.ContainerID, fn func(*Container) error) (*Container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.containers[id]
	if !ok {
		return nil, errdefs.NotFound("container %q not found", id)
	}
	next := cloneContainer(cur)
	if err := fn(next); err != nil {
		return nil, err
	}
	if next.ID != cur.ID || next.SandboxID != cur.SandboxID {
		return nil, errdefs.InvalidArgument("container and sandbox IDs cannot change")
	}
	if err := checkTransition(cur.State, next.State, containerTransitions); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if err := writeRecord(s.containerPath(id), next.marshal); err != nil {
		return nil, err
	}
	s.containers[id] = next
	return cloneContainer(next), nil
}

// DeleteSandbox removes the record; it must have no containers left.
// Deleting an unknown sandbox is not an error (removes are idempotent).
func (s *Store) DeleteSandbox(id ids.SandboxID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		if c.SandboxID == id {
			return errdefs.FailedPrecondition("sandbox %s still has container %s", id, c.ID)
		}
	}
	if err := os.Remove(s.sandboxPath(id)); err != nil && !os.IsNotExist(err) {
		return err
	}
	delete(s.sandboxes, id)
	return nil
}

// DeleteContainer removes the record; unknown IDs are not an error.
func (s *Store) DeleteContainer(id ids.ContainerID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.containerPath(id)); err != nil && !os.IsNotExist(err) {
		return err
	}
	delete(s.containers, id)
	return nil
}

// writeRecord writes atomically: a crash leaves the old or the new file,
// never a torn one.
func writeRecord(path string, marshal func() ([]byte, error)) error {
	b, err := marshal()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func cloneSandbox(s *Sandbox) *Sandbox {
	c := *s
	c.IPs = slices.Clone(s.IPs)
	c.Extra = maps.Clone(s.Extra)
	return &c
}

func cloneContainer(s *Container) *Container {
	c := *s
	c.Extra = maps.Clone(s.Extra)
	return &c
}

func cmpCreated(a, b int64, ida, idb string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	default:
		return strings.Compare(ida, idb)
	}
}
