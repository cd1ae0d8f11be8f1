package state

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/noded-dev/noded/internal/atomicfile"
	"github.com/noded-dev/noded/internal/errdefs"
)

// kind is what the generic table needs to know about one kind of record
// (sandboxes, containers): sandboxes and containers are stored, copied,
// listed and updated the same way, and differ only in these functions and
// the words used in errors.
type kind[ID ~string, R any] struct {
	// subdir is the directory of the kind's files under the state dir.
	subdir string
	// noun names a record in "exists" errors and lookupNoun in "not
	// found" errors ("sandbox" and "pod sandbox": the CRI's word is what
	// the kubelet shows its user).
	noun, lookupNoun string

	id      func(*R) ID
	created func(*R) int64
	// clone returns a deep copy: the table hands out copies so that no
	// caller can change a published record behind the store's back.
	clone     func(*R) *R
	marshal   func(*R) ([]byte, error)
	unmarshal func([]byte) (*R, error)
	// valid rejects a record whose state is unknown (status.go).
	valid func(*R) error
	// checkUpdate rejects an update that changes an identity or makes a
	// transition the state machine does not allow (status.go).
	checkUpdate func(cur, next *R) error
}

// table is the records of one kind, in memory and one file each on disk.
// It does no locking: the Store's mu guards every table together, since
// some operations look at two tables (a container needs its sandbox).
type table[ID ~string, R any] struct {
	k    *kind[ID, R]
	dir  string
	recs map[ID]*R
}

func newTable[ID ~string, R any](k *kind[ID, R], stateDir string) *table[ID, R] {
	return &table[ID, R]{k: k, dir: filepath.Join(stateDir, k.subdir), recs: map[ID]*R{}}
}

func (t *table[ID, R]) path(id ID) string {
	return filepath.Join(t.dir, string(id)+".json")
}

// load reads every record file of the table. Files that cannot be used
// are moved aside with a ".corrupt" suffix and returned as warnings: one
// bad file must not keep a node from running its other pods.
func (t *table[ID, R]) load() (warnings []error, err error) {
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".tmp-") {
			// The temporary file of a write that a kill cut short before
			// its rename (internal/atomicfile): the record is the file it
			// was to replace. More likely since exits are published
			// during their write (Store.RecordContainerExit).
			_ = os.Remove(filepath.Join(t.dir, name))
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		path := filepath.Join(t.dir, name)
		if err := t.loadFile(path); err != nil {
			warnings = append(warnings, fmt.Errorf("%s: %w (moved aside)", path, err))
			_ = os.Rename(path, path+".corrupt")
		}
	}
	return warnings, nil
}

func (t *table[ID, R]) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r, err := t.k.unmarshal(b)
	if err != nil {
		return err
	}
	if err := t.k.valid(r); err != nil {
		return err
	}
	t.recs[t.k.id(r)] = r
	return nil
}

func (t *table[ID, R]) has(id ID) bool {
	_, ok := t.recs[id]
	return ok
}

// get returns a copy of the record.
func (t *table[ID, R]) get(id ID) (*R, error) {
	r, ok := t.recs[id]
	if !ok {
		return nil, errdefs.NotFound("%s %q not found", t.k.lookupNoun, id)
	}
	return t.k.clone(r), nil
}

// add writes and publishes a record whose ID must be new; checks are
// further conditions (say, on another table), tested after the ID.
func (t *table[ID, R]) add(r *R, checks ...func() error) error {
	id := t.k.id(r)
	if t.has(id) {
		return errdefs.AlreadyExists("%s %s exists", t.k.noun, id)
	}
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	c := t.k.clone(r)
	if err := t.write(c); err != nil {
		return err
	}
	t.recs[id] = c
	return nil
}

// update applies fn to a copy of the record, checks the result, writes it
// and only then publishes it, so that a reader never sees a record that is
// not on disk and a failed update changes nothing.
func (t *table[ID, R]) update(id ID, fn func(*R) error) (*R, error) {
	next, err := t.prepare(id, fn)
	if err != nil {
		return nil, err
	}
	if err := t.write(next); err != nil {
		return nil, err
	}
	t.recs[id] = next
	return t.k.clone(next), nil
}

// prepare applies fn to a copy of the record and checks the result,
// changing nothing: the first half of update.
func (t *table[ID, R]) prepare(id ID, fn func(*R) error) (*R, error) {
	cur, ok := t.recs[id]
	if !ok {
		return nil, errdefs.NotFound("%s %q not found", t.k.lookupNoun, id)
	}
	next := t.k.clone(cur)
	if err := fn(next); err != nil {
		return nil, err
	}
	if err := t.k.checkUpdate(cur, next); err != nil {
		return nil, err
	}
	return next, nil
}

// delete removes the record; an unknown ID is not an error (removes are
// idempotent).
func (t *table[ID, R]) delete(id ID) error {
	if err := os.Remove(t.path(id)); err != nil && !os.IsNotExist(err) {
		return err
	}
	delete(t.recs, id)
	return nil
}

// list returns copies of all records, oldest first (ties by ID, so the
// order is stable).
func (t *table[ID, R]) list() []*R {
	out := make([]*R, 0, len(t.recs))
	for _, r := range t.recs {
		out = append(out, t.k.clone(r))
	}
	slices.SortFunc(out, func(a, b *R) int {
		if c := cmp.Compare(t.k.created(a), t.k.created(b)); c != 0 {
			return c
		}
		return strings.Compare(string(t.k.id(a)), string(t.k.id(b)))
	})
	return out
}

// ids returns every ID, without copying records.
func (t *table[ID, R]) ids() []ID {
	return slices.Collect(maps.Keys(t.recs))
}

// write persists r atomically (internal/atomicfile): a crash leaves the
// old or the new file, never a torn one, and the rename is durable.
func (t *table[ID, R]) write(r *R) error {
	b, err := t.k.marshal(r)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(t.path(t.k.id(r)), b, 0o600)
}
