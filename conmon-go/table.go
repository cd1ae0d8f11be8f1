package main

import (
	"sync"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// ctrTable is the pod's containers by id: a created container from its
// publication (containers.publish) or an adopted one from its adoption,
// until delete removes it. It owns the map; mu guards it, is held only
// for the map's own reads and writes and never while another lock is
// taken (a container's state is read after it is released).
type ctrTable struct {
	pod string // for errors

	mu   sync.Mutex
	ctrs map[string]*ctr
}

func newCtrTable(pod string) *ctrTable {
	return &ctrTable{pod: pod, ctrs: map[string]*ctr{}}
}

// get returns the container id, or a not_found error.
func (t *ctrTable) get(id string) (*ctr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.ctrs[id]
	if c == nil {
		return nil, errf(wire.CodeNotFound, "container %s not found in pod %s", id, t.pod)
	}
	return c, nil
}

// has reports whether there is a container id.
func (t *ctrTable) has(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.ctrs[id]
	return ok
}

// add makes c known to requests.
func (t *ctrTable) add(c *ctr) {
	t.mu.Lock()
	t.ctrs[c.id] = c
	t.mu.Unlock()
}

// remove forgets the container id (deleted).
func (t *ctrTable) remove(id string) {
	t.mu.Lock()
	delete(t.ctrs, id)
	t.mu.Unlock()
}

// ids returns the ids of the containers, in no order.
func (t *ctrTable) ids() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]string, 0, len(t.ctrs))
	for id := range t.ctrs {
		ids = append(ids, id)
	}
	return ids
}

// state returns a copy of the state of the container id.
func (t *ctrTable) state(id string) (*wire.ContainerState, error) {
	c, err := t.get(id)
	if err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

// list returns a copy of the state of every container.
func (t *ctrTable) list() []wire.ContainerState {
	t.mu.Lock()
	cs := make([]*ctr, 0, len(t.ctrs))
	for _, c := range t.ctrs {
		cs = append(cs, c)
	}
	t.mu.Unlock()
	out := make([]wire.ContainerState, 0, len(cs))
	for _, c := range cs {
		out = append(out, *c.snapshot())
	}
	return out
}
