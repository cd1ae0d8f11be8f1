package main

import (
	"sync"

	"github.com/noded-dev/noded/internal/oci/wire"
)

// ctrTable is the pod's containers by id: a created container from its
// publication (containers.publish) or an adopted one from its adoption,
// until delete removes it; and the ids being created, from the check of
// the create request to its end. It owns the maps; mu guards them, is
// held only for the maps' own reads and writes and never while another
// lock is taken (a container's state is read after it is released).
type ctrTable struct {
	pod string // for errors

	mu       sync.Mutex
	ctrs     map[string]*ctr
	creating map[string]chan struct{} // closed when the create ends
}

func newCtrTable(pod string) *ctrTable {
	return &ctrTable{pod: pod, ctrs: map[string]*ctr{}, creating: map[string]chan struct{}{}}
}

// reserve marks id as being created, unless it exists or is being created
// already; the returned function ends the reservation (after the create
// published the container, or failed).
func (t *ctrTable) reserve(id string) (done func(), _ error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.ctrs[id]; ok {
		return nil, errf(wire.CodeAlreadyExists, "container %s already exists", id)
	}
	if _, ok := t.creating[id]; ok {
		return nil, errf(wire.CodeAlreadyExists, "container %s is being created", id)
	}
	ch := make(chan struct{})
	t.creating[id] = ch
	return func() {
		t.mu.Lock()
		delete(t.creating, id)
		t.mu.Unlock()
		close(ch)
	}, nil
}

// waitCreated waits until no create of id is under way: a delete must see
// the container a create publishes, even when the create's client went
// away (noded killed) and noded's recovery deletes the id at once.
func (t *ctrTable) waitCreated(id string) {
	t.mu.Lock()
	ch := t.creating[id]
	t.mu.Unlock()
	if ch != nil {
		<-ch
	}
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
