package sandbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/eventbus"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/oci"
	"github.com/noded-dev/noded/internal/state"
)

// DefaultEventQueue is how many events a GetContainerEvents subscriber may
// have waiting before it is cut off: the capacity of the kubelet's own
// channel behind its stream (pkg/kubelet/pleg/evented.go).
const DefaultEventQueue = 1000

// recoveryEventsKeep is how long the events of a restart's recovery (exits
// that happened while noded was away) are replayed to new subscribers:
// long enough for the kubelet, whose stream broke with the old noded, to
// reconnect.
const recoveryEventsKeep = 2 * time.Minute

// Events follows running containers and records their exits, so that
// status and list calls never have to ask a monitor, and serves the
// kubelet's GetContainerEvents: CONTAINER_CREATED, STARTED, STOPPED and
// DELETED for containers and for pod sandboxes (whose events carry the
// pod's ID as container_id, as containerd's and CRI-O's do), each with
// the pod's status and its containers' statuses at the time of the event.
//
// It owns the exit watchers (one goroutine per running container, ended by
// Close) and the event bus (internal/eventbus: one bounded queue per
// subscriber; a publisher never waits for a subscriber, one that falls
// behind is cut off with ResourceExhausted and its kubelet relists).
// Events are published after the record they announce is written, except
// a watched exit's STOPPED, published while its record is written
// (recordExit says why that loses nothing).
type Events struct {
	*base
	log *logrus.Entry
	bus *eventbus.Bus[*runtimeapi.ContainerEventResponse]
	// pods and containers build the statuses an event carries, with the
	// code of PodSandboxStatus and ContainerStatus.
	pods       *Pods
	containers *Containers

	// ctx ends the watchers when the service is closed.
	ctx      context.Context
	cancel   context.CancelFunc
	watchers sync.WaitGroup
}

func newEvents(b *base, lg *logrus.Entry, queue int) *Events {
	if queue <= 0 {
		queue = DefaultEventQueue
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Events{base: b, log: lg, bus: eventbus.New[*runtimeapi.ContainerEventResponse](queue), ctx: ctx, cancel: cancel}
}

// Close ends the event streams, stops the watchers and waits for them.
func (s *Events) Close() {
	s.EndStreams()
	s.cancel()
	s.watchers.Wait()
}

// EndStreams ends every GetContainerEvents stream (with Unavailable) and
// refuses new ones: a graceful shutdown does not wait for streams that
// never end by themselves.
func (s *Events) EndStreams() { s.bus.Close() }

// ContainerEvents subscribes, calls subscribed (which tells the client
// that no later event will be missed), and passes every event to send,
// until ctx ends, either function fails, or the subscription is cut off:
// ResourceExhausted when the subscriber fell behind
// (eventbus.ErrOverflow), Unavailable when noded shuts down.
func (s *Events) ContainerEvents(ctx context.Context, subscribed func() error, send func(*runtimeapi.ContainerEventResponse) error) error {
	sub := s.bus.Subscribe()
	defer sub.Close()
	if err := subscribed(); err != nil {
		return err
	}
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				return sub.Err()
			}
			if err := send(ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// event builds the event of type t about id (a container, or the pod
// itself) in pod, with the statuses as recorded now; nil when nobody
// would receive it. Build before a record is deleted what must still show
// it (a pod's DELETED event), publish after.
func (s *Events) event(t runtimeapi.ContainerEventType, pod ids.SandboxID, id string) *runtimeapi.ContainerEventResponse {
	if !s.bus.Active() {
		return nil
	}
	ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: t, CreatedAt: time.Now().UnixNano()}
	// A pod or container removed meanwhile is left out, as containerd
	// does (the kubelet then ignores the event, or relists).
	if st, _, err := s.pods.PodSandboxStatus(pod, false); err == nil {
		ev.PodSandboxStatus = st
	}
	for _, c := range s.o.Store.SandboxContainers(pod) {
		if st, _, err := s.containers.ContainerStatus(c.ID, false); err == nil {
			ev.ContainersStatuses = append(ev.ContainersStatuses, st)
		}
	}
	return ev
}

// publish sends a built event (nil: nobody listened) to the subscribers.
func (s *Events) publish(ev *runtimeapi.ContainerEventResponse) {
	if ev != nil {
		s.bus.Publish(ev)
	}
}

// emit builds and publishes at once.
func (s *Events) emit(t runtimeapi.ContainerEventType, pod ids.SandboxID, id string) {
	s.publish(s.event(t, pod, id))
}

// holdRecovery keeps the events of a restart's recovery for the
// subscribers to come; releaseRecovery lets them go to those arriving
// within recoveryEventsKeep.
func (s *Events) holdRecovery() { s.bus.Hold() }

func (s *Events) releaseRecovery() {
	held, dropped := s.bus.Release(recoveryEventsKeep)
	if dropped > 0 {
		s.log.WithFields(logrus.Fields{"kept": held, "dropped": dropped}).Warn("more recovery events than a subscriber's queue; the kubelet's relist finds the rest")
	}
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
		s.recordExit(pod, id, st)
	}()
}

// watchPause follows a ready pod's pause container, which its monitor
// runs (and reaps, as its parent) like any container: if the pause dies
// while noded runs (killed, crashed), the pod can no longer run
// containers, and pauseExited records it. From RunPodSandbox once the pod
// is recorded, and from recovery for a pod whose pause still runs, so a
// restart keeps it watched.
func (s *Events) watchPause(pod ids.SandboxID) {
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		if _, err := s.o.Monitor.Wait(s.ctx, pod, oci.ContainerID(pod)); err != nil {
			// NotFound: the pod's monitor shut down (a stop) and the
			// pause went with it.
			if s.ctx.Err() == nil && !errdefs.IsNotFound(err) {
				s.log.WithError(err).WithField("pod", pod.Short()).Warn("lost track of the pause process")
			}
			return
		}
		s.pauseExited(pod)
	}()
}

// pauseExited records a pod whose pause process exited as unknown, as
// recovery records one whose pause it finds gone (PodSandboxStatus reports
// it NOTREADY), and publishes the pod's STOPPED event (container_id the
// pod's ID, which the kubelet's EventedPLEG reads as the sandbox's exit);
// the kubelet then stops the pod and makes a new one. Under the pod's
// lock, so that a StopPodSandbox, which kills the pause itself, ends
// first: it has recorded the pod not ready and sent its STOPPED, and
// nothing is done here. One STOPPED per pod, whichever comes first; the
// unknown record is on disk before the event (a restart does not send it
// again: recovery only looks at ready pods).
func (s *Events) pauseExited(pod ids.SandboxID) {
	unlock, err := s.lockPod(s.ctx, pod)
	if err != nil {
		return // closing
	}
	defer unlock()
	_, err = s.o.Store.UpdateSandbox(pod, func(r *state.Sandbox) error {
		if r.State != state.SandboxReady {
			return errAlreadyRecorded
		}
		r.State = state.SandboxUnknown
		return nil
	})
	if err != nil {
		if !errors.Is(err, errAlreadyRecorded) && !errdefs.IsNotFound(err) {
			s.log.WithError(err).WithField("pod", pod.Short()).Warn("recording the pause process's exit")
		}
		return
	}
	s.log.WithField("pod", pod.Short()).Warn("pause process exited; pod is not ready")
	s.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod, string(pod))
}

// recordExit records the exit unless a stop recorded it first, and then
// publishes the container's STOPPED event: exactly one per exit, from
// whichever records it.
//
// The event goes out (and ContainerStatus shows the exit) while the
// record's file is still being written (state.Store.RecordContainerExit):
// the two fsyncs are not on the way to the kubelet. That keeps the rule
// that a kill -9 at any moment loses nothing, because the monitor keeps
// the exit too: a noded killed before the file is written finds the
// record running at its restart and records the monitor's exit then, with
// its real code, replaying the STOPPED event (Containers.recover). Only in
// that case can an exit's STOPPED event come twice, once before and once
// after the restart.
func (s *Events) recordExit(pod ids.SandboxID, id ids.ContainerID, st oci.State) {
	_, written, err := s.o.Store.RecordContainerExit(id, func(r *state.Container) error {
		if r.State == state.ContainerExited {
			return errAlreadyRecorded
		}
		applyState(r, st)
		if r.State != state.ContainerExited {
			return fmt.Errorf("monitor reported %s after waiting for the exit", st.Status)
		}
		return nil
	})
	if err == nil {
		s.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod, string(id))
		if err := written(); err != nil {
			s.log.WithError(err).WithField("container", id.Short()).Warn("writing the record of a container exit; a restart records it again from the monitor")
		}
		s.nriContainer(log.WithContext(s.ctx, s.log), id, s.o.NRI.StopContainer)
		return
	}
	if !errors.Is(err, errAlreadyRecorded) && !errdefs.IsNotFound(err) {
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
