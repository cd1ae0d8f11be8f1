package sandbox

import (
	"context"
	"errors"
	"runtime"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/eventbus"
	"github.com/noded-dev/noded/internal/oci"
)

// subscriber runs ContainerEvents until the test ends and hands over each
// event; it returns once the subscription exists, and a function that
// waits for ContainerEvents to end by itself and returns its error.
func subscriber(t *testing.T, s *Services) (<-chan *runtimeapi.ContainerEventResponse, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan *runtimeapi.ContainerEventResponse, 100)
	done := make(chan error, 1)
	before := s.Events.bus.Subscribers()
	go func() {
		done <- s.Events.ContainerEvents(ctx, func() error { return nil }, func(ev *runtimeapi.ContainerEventResponse) error {
			events <- ev
			return nil
		})
	}()
	for s.Events.bus.Subscribers() == before {
		runtime.Gosched()
	}
	t.Cleanup(cancel)
	return events, func() error { return <-done }
}

type wantEvent struct {
	t  runtimeapi.ContainerEventType
	id string
}

// next reads one event and checks its type, its ID and that it carries the
// pod's status, as the kubelet needs it.
func next(t *testing.T, events <-chan *runtimeapi.ContainerEventResponse, want wantEvent) *runtimeapi.ContainerEventResponse {
	t.Helper()
	ev := <-events
	if ev.GetContainerEventType() != want.t || ev.GetContainerId() != want.id {
		t.Fatalf("event %s %s, want %s %s", ev.GetContainerEventType(), ev.GetContainerId(), want.t, want.id)
	}
	if ev.GetPodSandboxStatus().GetMetadata().GetUid() == "" || ev.GetCreatedAt() == 0 {
		t.Fatalf("event %s %s without pod status or time: %v", want.t, want.id, ev)
	}
	return ev
}

func containerState(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, st := range ev.GetContainersStatuses() {
		if st.GetId() == id {
			return st
		}
	}
	return nil
}

func TestEventsOfAPodsLife(t *testing.T) {
	s, f := newTestService(t, nil)
	ctx := context.Background()
	first, _ := subscriber(t, s)
	second, _ := subscriber(t, s)

	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("ev"), "")
	if err != nil {
		t.Fatal(err)
	}
	pod := string(podID)
	ctrID, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c"))
	if err != nil {
		t.Fatal(err)
	}
	ctr := string(ctrID)
	if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	// The container exits by itself: its watcher records the exit.
	if err := f.Kill(ctx, podID, ctrID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, events := range []<-chan *runtimeapi.ContainerEventResponse{first, second} {
		ev := next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, pod})
		if ev.GetPodSandboxStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || len(ev.GetContainersStatuses()) != 0 {
			t.Errorf("pod created: %v", ev)
		}
		next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, pod})
		ev = next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, ctr})
		if st := containerState(ev, ctr); st == nil {
			t.Errorf("container created: no status of it: %v", ev)
		}
		next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, ctr})
		ev = next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, ctr})
		if st := containerState(ev, ctr); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 128+int32(syscall.SIGKILL) {
			t.Errorf("container stopped: status %v", st)
		}
	}

	if err := s.Containers.RemoveContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	if err := s.Pods.StopPodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	if err := s.Pods.RemovePodSandbox(ctx, podID); err != nil {
		t.Fatal(err)
	}
	for _, events := range []<-chan *runtimeapi.ContainerEventResponse{first, second} {
		ev := next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, ctr})
		if len(ev.GetContainersStatuses()) != 0 {
			t.Errorf("container deleted: still listed: %v", ev)
		}
		next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod})
		// The pod's last status, although its record is gone.
		ev = next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, pod})
		if ev.GetPodSandboxStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod deleted: %v", ev.GetPodSandboxStatus())
		}
		select {
		case ev := <-events:
			t.Errorf("extra event %s %s", ev.GetContainerEventType(), ev.GetContainerId())
		default:
		}
	}
}

// A stop racing the exit watcher gives one STOPPED event, whichever of the
// two records the exit.
func TestOneStoppedEventPerExit(t *testing.T) {
	s, _ := newTestService(t, nil)
	ctx := context.Background()
	podID, _ := s.Pods.RunPodSandbox(ctx, podConfig("once"), "")
	ctrID, _ := s.Containers.CreateContainer(ctx, podID, containerConfig("c"))
	events, _ := subscriber(t, s)
	if err := s.Containers.StartContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	if err := s.Containers.StopContainer(ctx, ctrID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Containers.RemoveContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, string(ctrID)})
	next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, string(ctrID)})
	next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, string(ctrID)})
}

// A subscriber that stops reading holds at most its queue, is cut off with
// ResourceExhausted, and never holds up an operation (they run in this
// goroutine: one that waited for it would never return).
func TestStalledSubscriberIsCutOff(t *testing.T) {
	s, _ := newTestService(t, nil)
	const queue = 4
	s.Events.bus = eventbus.New[*runtimeapi.ContainerEventResponse](queue)
	ctx := context.Background()

	stall, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Events.ContainerEvents(ctx, func() error { return nil }, func(*runtimeapi.ContainerEventResponse) error {
			close(stall)
			<-release // never reads again until released
			return nil
		})
	}()
	for s.Events.bus.Subscribers() == 0 {
		runtime.Gosched()
	}
	reader, _ := subscriber(t, s)

	podID, err := s.Pods.RunPodSandbox(ctx, podConfig("slow"), "")
	if err != nil {
		t.Fatal(err)
	}
	<-stall
	n := 2
	for i := range 20 {
		id, err := s.Containers.CreateContainer(ctx, podID, containerConfig("c"+string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Containers.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		n += 2
		// The reader keeps up; the stalled one is cut off.
		for range 2 {
			<-reader
		}
	}
	if got := s.Events.bus.Subscribers(); got != 1 {
		t.Errorf("%d subscribers after %d events, want only the reader", got, n)
	}
	close(release)
	if err := <-done; !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("stalled subscriber ended with %v, want ResourceExhausted", err)
	}
}

// Exits that happened while noded was away reach the subscribers that
// connect after the restart.
func TestExitsFoundAtRecoveryAreReplayed(t *testing.T) {
	s, ctrID := exitedWhileAway(t, "away")
	ctx := context.Background()
	s2 := restartOnDisk(t, s)
	events, _ := subscriber(t, s2)
	ev := next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, string(ctrID)})
	if cs := containerState(ev, string(ctrID)); cs.GetExitCode() != 3 {
		t.Errorf("replayed STOPPED: status %v", cs)
	}
	if err := s2.Containers.RemoveContainer(ctx, ctrID); err != nil {
		t.Fatal(err)
	}
	next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, string(ctrID)})
}

func TestClosingEndsStreams(t *testing.T) {
	s, _ := newTestService(t, nil)
	_, wait := subscriber(t, s)
	s.Events.EndStreams()
	if err := wait(); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("stream ended with %v, want Unavailable", err)
	}
}

// A pause process that dies while noded runs makes its pod not ready, with
// one STOPPED event for the pod (its ID as container_id), also for a pod
// watched again after a restart; the kubelet's stop and removal then add
// no second STOPPED.
func TestPauseDeathStopsThePod(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := map[bool]string{false: "running", true: "after restart"}[restart]
		t.Run(name, func(t *testing.T) {
			s, f := newTestService(t, nil)
			ctx := context.Background()
			podID, err := s.Pods.RunPodSandbox(ctx, podConfig("pause"), "")
			if err != nil {
				t.Fatal(err)
			}
			if restart {
				s = restartOnDisk(t, s)
			}
			pod := string(podID)
			events, _ := subscriber(t, s)
			if err := f.Kill(ctx, podID, oci.ContainerID(podID), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			ev := next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod})
			if st := ev.GetPodSandboxStatus().GetState(); st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Errorf("STOPPED event: pod %s, want NOTREADY", st)
			}
			if st, _, err := s.Pods.PodSandboxStatus(podID, false); err != nil || st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Errorf("PodSandboxStatus after the pause died: %v %v", st, err)
			}
			if err := s.Pods.StopPodSandbox(ctx, podID); err != nil {
				t.Fatal(err)
			}
			if err := s.Pods.RemovePodSandbox(ctx, podID); err != nil {
				t.Fatal(err)
			}
			next(t, events, wantEvent{runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, pod})
			select {
			case ev := <-events:
				t.Errorf("extra event %s %s", ev.GetContainerEventType(), ev.GetContainerId())
			default:
			}
		})
	}
}
