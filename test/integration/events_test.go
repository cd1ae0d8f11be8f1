//go:build integration

package integration

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

// eventStream is one GetContainerEvents subscriber, read in the
// background: events arrive on C, and the error that ended the stream on
// Done.
type eventStream struct {
	C    chan *runtimeapi.ContainerEventResponse
	Done chan error
}

// subscribe opens a GetContainerEvents stream and returns once noded has
// subscribed it (its response headers came): no later event is missed.
// With read false nothing is read: the stream is returned as is.
func subscribe(t *testing.T, rt runtimeapi.RuntimeServiceClient) runtimeapi.RuntimeService_GetContainerEventsClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	if _, err := s.Header(); err != nil {
		t.Fatalf("GetContainerEvents headers: %v", err)
	}
	return s
}

func readEvents(s runtimeapi.RuntimeService_GetContainerEventsClient) *eventStream {
	es := &eventStream{C: make(chan *runtimeapi.ContainerEventResponse, 1000), Done: make(chan error, 1)}
	go func() {
		for {
			ev, err := s.Recv()
			if err != nil {
				es.Done <- err
				return
			}
			es.C <- ev
		}
	}()
	return es
}

// expect reads the next event and checks its type and ID, and that it
// carries the status of the pod (uid) as the kubelet needs it.
func (es *eventStream) expect(t *testing.T, typ runtimeapi.ContainerEventType, id, uid string) *runtimeapi.ContainerEventResponse {
	t.Helper()
	select {
	case ev := <-es.C:
		if ev.GetContainerEventType() != typ || ev.GetContainerId() != id {
			t.Fatalf("got event %s %s, want %s %s", ev.GetContainerEventType(), ev.GetContainerId(), typ, id)
		}
		if ev.GetPodSandboxStatus().GetMetadata().GetUid() != uid || ev.GetCreatedAt() == 0 {
			t.Fatalf("event %s %s: pod status %v created_at %d, want pod %s", typ, id, ev.GetPodSandboxStatus(), ev.GetCreatedAt(), uid)
		}
		return ev
	case err := <-es.Done:
		t.Fatalf("event stream ended waiting for %s %s: %v", typ, id, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s event for %s within 30s", typ, id)
	}
	return nil
}

func statusOf(ev *runtimeapi.ContainerEventResponse, id string) *runtimeapi.ContainerStatus {
	for _, st := range ev.GetContainersStatuses() {
		if st.GetId() == id {
			return st
		}
	}
	return nil
}

// TestContainerEvents: two subscribers at once each get a pod's whole
// life in order, sandbox events (container_id = the pod's ID) included,
// with the pod's status and its containers' statuses.
func TestContainerEvents(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	subs := []*eventStream{readEvents(subscribe(t, e.rt)), readEvents(subscribe(t, e.rt))}

	pcfg := e.podConfig("events")
	uid := pcfg.GetMetadata().GetUid()
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	run, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, e.d.Log)
	}
	pod := run.GetPodSandboxId()
	ctr := e.createStart(t, pod, pcfg, "main", []string{"sh", "-c", "exit 3"})

	for i, s := range subs {
		ev := s.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, pod, uid)
		if ev.GetPodSandboxStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || ev.GetPodSandboxStatus().GetId() != pod {
			t.Errorf("subscriber %d: pod created with status %v", i, ev.GetPodSandboxStatus())
		}
		s.expect(t, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, pod, uid)
		ev = s.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, ctr, uid)
		if statusOf(ev, ctr).GetMetadata().GetName() != "main" {
			t.Errorf("subscriber %d: container created without its status: %v", i, ev.GetContainersStatuses())
		}
		s.expect(t, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, ctr, uid)
		ev = s.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, ctr, uid)
		if st := statusOf(ev, ctr); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 3 || st.GetFinishedAt() == 0 {
			t.Errorf("subscriber %d: container stopped with status %v", i, st)
		}
	}

	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		ev := s.expect(t, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, ctr, uid)
		if statusOf(ev, ctr) != nil {
			t.Errorf("subscriber %d: deleted container still listed", i)
		}
		ev = s.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, pod, uid)
		if ev.GetPodSandboxStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("subscriber %d: pod stopped with status %v", i, ev.GetPodSandboxStatus())
		}
		// The pod's last status, though its record is gone.
		s.expect(t, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, pod, uid)
	}

	// SIGTERM with the streams open: noded ends them (Unavailable) and
	// stops at once, not after its graceful-stop timeout.
	e.removed = true // nothing left to remove, and no daemon to do it
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, s := range subs {
		if err := <-s.Done; status.Code(err) != codes.Unavailable {
			t.Errorf("subscriber %d: stream ended with %v at shutdown, want Unavailable", i, err)
		}
	}
}

// TestStalledEventSubscriber: a subscriber that never reads while many
// events happen holds noded up in nothing (every call returns), is cut off
// once its queue is full (NODED_EVENT_QUEUE, a test build's knob: 4
// events) and its stream ends with ResourceExhausted after fewer events
// than happened; one that reads gets them all. Its events are large (the
// pod's 64 KiB annotation is in every one), so that the transport's own
// buffers, 64 KiB with the client's fixed window, hold one at most.
func TestStalledEventSubscriber(t *testing.T) {
	e := newPodEnv(t)
	if err := e.d.Stop(); err != nil {
		t.Fatal(err)
	}
	d, err := testenv.Start(testenv.Options{Dir: e.d.Dir, Args: e.d.Opts.Args, Bin: failpointsBin(t), Env: []string{"NODED_EVENT_QUEUE=4"}})
	if err != nil {
		t.Fatal(err)
	}
	e.d, e.rt = &Daemon{d}, d.Runtime()
	t.Cleanup(func() {
		e.removeAll(t)
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stalled := subscribe(t, runtimeapi.NewRuntimeServiceClient(conn))
	reader := readEvents(subscribe(t, e.rt))

	ctx := context.Background()
	pcfg := e.podConfig("stalled")
	pcfg.Annotations = map[string]string{"big": strings.Repeat("x", 64<<10)}
	uid := pcfg.GetMetadata().GetUid()
	run, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, d.Log)
	}
	pod := run.GetPodSandboxId()
	reader.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, pod, uid)
	reader.expect(t, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, pod, uid)
	const cycles = 12
	for i := range cycles {
		c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod, SandboxConfig: pcfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: uint32(i)},
				Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
				Command:  []string{"true"},
			},
		})
		if err != nil {
			t.Fatalf("CreateContainer %d: %v", i, err)
		}
		if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
			t.Fatalf("RemoveContainer %d: %v", i, err)
		}
		// A created container that is removed is stopped first.
		reader.expect(t, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, c.GetContainerId(), uid)
		reader.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c.GetContainerId(), uid)
		reader.expect(t, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, c.GetContainerId(), uid)
	}
	total := 2 + 3*cycles

	got := 0
	for {
		_, err := stalled.Recv()
		if err != nil {
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("stalled stream ended with %v after %d events, want ResourceExhausted", err, got)
			}
			break
		}
		got++
	}
	// Its queue (4), the event noded was sending when the client stopped
	// reading, and what the transport's window held.
	if got >= total || got > 4+3 {
		t.Errorf("stalled subscriber got %d of %d events before its error, want at most its queue and the transport's", got, total)
	}
	t.Logf("stalled subscriber: %d of %d events, then ResourceExhausted", got, total)
	select {
	case err := <-reader.Done:
		t.Fatalf("reading subscriber's stream ended: %v", err)
	default:
	}
}

// TestStoppedEventAfterRestart: noded is killed (SIGKILL) while a
// container runs; the container dies while noded is down; a subscriber of
// the restarted noded gets the container's STOPPED event, with its exit
// code.
func TestStoppedEventAfterRestart(t *testing.T) {
	e := newPodEnv(t)
	_, ctr, _ := e.runPod(t, "away", []string{"sleep", "3600"})
	pid := e.containerPid(t, ctr)

	e.d.Kill(t)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Its monitor (which outlives noded) reaps it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container process %d still there 10s after SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}

	e.d = e.d.Restart(t)
	e.rt = e.d.Runtime(t)
	// Cleanups run last first: remove the pods before this daemon stops.
	t.Cleanup(func() { e.removeAll(t) })
	s := readEvents(subscribe(t, e.rt))
	ev := s.expect(t, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, ctr, "uid-away")
	if st := statusOf(ev, ctr); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 128+int32(syscall.SIGKILL) {
		t.Errorf("STOPPED after restart: status %v", st)
	}
}
