package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// Events follows running containers and records their exits, so that
// status and list calls never have to ask a monitor. It owns the exit
// watchers (one goroutine per running container, ended by Close); the
// kubelet's GetContainerEvents will be served from here.
type Events struct {
	*base
	log *logrus.Entry

	// ctx ends the watchers when the service is closed.
	ctx      context.Context
	cancel   context.CancelFunc
	watchers sync.WaitGroup
}

func newEvents(b *base, lg *logrus.Entry) *Events {
	ctx, cancel := context.WithCancel(context.Background())
	return &Events{base: b, log: lg, ctx: ctx, cancel: cancel}
}

// Close stops the watchers and waits for them.
func (s *Events) Close() {
	s.cancel()
	s.watchers.Wait()
}

// watch follows a running container until it exits and records the exit,
// so that status and list calls never have to ask the monitor.
func (s *Events) watch(pod ids.SandboxID, id ids.ContainerID) {
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		st, err := s.o.Monitor.Wait(s.ctx, pod, id)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.WithError(err).WithField("container", id.Short()).Warn("lost track of container exit")
			}
			return
		}
		s.recordExit(id, st)
	}()
}

func (s *Events) recordExit(id ids.ContainerID, st oci.State) {
	_, err := s.o.Store.UpdateContainer(id, func(r *state.Container) error {
		if r.State == state.ContainerExited {
			return errAlreadyRecorded
		}
		applyState(r, st)
		return nil
	})
	if err != nil && !errors.Is(err, errAlreadyRecorded) && !errdefs.IsNotFound(err) {
		s.log.WithError(err).WithField("container", id.Short()).Warn("recording container exit")
	}
}

var errAlreadyRecorded = fmt.Errorf("exit already recorded")

// applyState copies what the monitor reports into the record.
func applyState(r *state.Container, st oci.State) {
	switch st.Status {
	case oci.StatusRunning:
		r.State = state.ContainerRunning
	case oci.StatusExited:
		r.State = state.ContainerExited
	case oci.StatusCreated:
		return
	default:
		r.State = state.ContainerUnknown
	}
	r.Pid = st.Pid
	if !st.StartedAt.IsZero() {
		r.StartedAt = st.StartedAt.UnixNano()
	}
	if st.Status == oci.StatusExited {
		r.Pid = 0
		r.ExitCode = st.ExitCode
		r.Reason = st.Reason
		if st.OOMKilled {
			r.Reason = "OOMKilled"
		}
		if r.Reason == "" {
			r.Reason = "Completed"
			if st.ExitCode != 0 {
				r.Reason = "Error"
			}
		}
		r.Message = st.Message
		r.FinishedAt = st.FinishedAt.UnixNano()
		if st.FinishedAt.IsZero() {
			r.FinishedAt = time.Now().UnixNano()
		}
	}
}
