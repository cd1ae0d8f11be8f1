// Package cleanup is the rollback stack every create in noded uses.
//
// Each step that acquires something (a name, a netns, a CNI allocation, a
// storage container, a monitor) pushes a named undo step. If the create
// fails, the steps run in reverse order on a context detached from the
// request's, so a cancelled or timed-out RPC still releases what it took.
//
//	var undo cleanup.Stack
//	defer func() { undo.RunIf(ctx, &retErr, log) }()
//	if err := names.Reserve(name, id); err != nil { return err }
//	undo.Push("release name "+name, func(context.Context) error { names.Release(id); return nil })
package cleanup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// Timeout bounds the whole rollback.
const Timeout = time.Minute

type step struct {
	name string
	fn   func(context.Context) error
}

// Stack is a LIFO list of named undo steps. The zero value is ready.
type Stack struct {
	steps []step
}

// Push adds an undo step; steps run last-pushed first.
func (s *Stack) Push(name string, fn func(context.Context) error) {
	s.steps = append(s.steps, step{name: name, fn: fn})
}

// Len is the number of pending steps.
func (s *Stack) Len() int { return len(s.steps) }

// Run executes every step in reverse order on a context detached from ctx
// (keeping its values, e.g. the logger) with its own timeout. Every step
// runs even if an earlier one fails; the failures are joined.
func (s *Stack) Run(ctx context.Context, log *logrus.Entry) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), Timeout)
	defer cancel()
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		if err := st.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
			if log != nil {
				log.WithError(err).WithField("step", st.name).Warn("rollback step failed")
			}
		} else if log != nil {
			log.WithField("step", st.name).Debug("rolled back")
		}
	}
	s.steps = nil
	return errors.Join(errs...)
}

// RunIf runs the stack when *retErr is non-nil; meant for a deferred call
// at the top of a create. A rollback failure is logged, not returned: the
// caller's error is the one the client needs to see.
func (s *Stack) RunIf(ctx context.Context, retErr *error, log *logrus.Entry) {
	if *retErr == nil {
		return
	}
	_ = s.Run(ctx, log)
}

// Release forgets every step: the create succeeded and owns its resources.
func (s *Stack) Release() { s.steps = nil }
