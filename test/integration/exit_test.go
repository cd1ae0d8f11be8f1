//go:build integration

package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestKilledAfterExitPublished kills noded as soon as a container exit's
// STOPPED event arrives. noded publishes it while the exit's record is
// still being written (state.Store.RecordContainerExit), so the kill may
// land before the file is there: whether or not it did, the restarted
// noded reports the exit with its real code (from the pod's monitor), and
// nothing is lost. Three exits, three kills.
func TestKilledAfterExitPublished(t *testing.T) {
	e := newPodEnv(t)
	var ctrs []string
	for _, name := range []string{"published-a", "published-b", "published-c"} {
		_, ctr, _ := e.runPod(t, name, []string{"sleep", "3600"})
		ctrs = append(ctrs, ctr)
	}
	for i, ctr := range ctrs {
		pid := e.containerPid(t, ctr)
		s := readEvents(subscribe(t, e.rt))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The previous kill's exit comes first when the kill beat its
		// record's write: the restart replayed it.
		for {
			ev := s.expectAny(t)
			if ev.GetContainerEventType() != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
				t.Fatalf("event %s %s, want STOPPED", ev.GetContainerEventType(), ev.GetContainerId())
			}
			if ev.GetContainerId() == ctr {
				break
			}
			t.Logf("STOPPED of %s replayed after the restart: noded was killed before its record was written", ev.GetContainerId())
		}
		e.d.Kill(t)
		e.d = e.d.Restart(t)
		e.rt = e.d.Runtime(t)
		// Cleanups run last first: remove the pods before this daemon
		// stops (once: the last restart's removes them all).
		t.Cleanup(func() { e.removeAll(t) })
		r, err := e.rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
		if err != nil {
			t.Fatal(err)
		}
		if st := r.GetStatus(); st.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || st.GetExitCode() != 128+int32(syscall.SIGKILL) || st.GetFinishedAt() == 0 {
			t.Fatalf("exit %d after the restart: %v, want exited with %d", i, st, 128+int32(syscall.SIGKILL))
		}
	}
}

// TestPauseDeathStopsThePod kills the pause process of a running pod
// (SIGKILL from the host, noded left running): the pod turns NOTREADY in
// PodSandboxStatus and ListPodSandbox and its STOPPED event (container_id
// the pod's ID, what the kubelet's EventedPLEG reads as the sandbox's
// exit) arrives, without a restart of noded. After a restart the pod is
// still NOTREADY, and another pod's pause is watched again: its death is
// noticed too.
func TestPauseDeathStopsThePod(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	first, _, _ := e.runPod(t, "pausedies-a", []string{"sleep", "3600"})
	second, _, _ := e.runPod(t, "pausedies-b", []string{"sleep", "3600"})

	killPause := func(pod, uid string) {
		t.Helper()
		s := readEvents(subscribe(t, e.rt))
		if err := syscall.Kill(e.pausePID(t, pod), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// A pod sharing its PID namespace loses its containers with the
		// pause: their STOPPED events may come first.
		for {
			ev := s.expectAny(t)
			if ev.GetContainerId() != pod {
				continue
			}
			if ev.GetContainerEventType() != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT || ev.GetPodSandboxStatus().GetMetadata().GetUid() != uid {
				t.Fatalf("pod event %s with pod %v, want STOPPED of %s", ev.GetContainerEventType(), ev.GetPodSandboxStatus().GetMetadata(), uid)
			}
			if st := ev.GetPodSandboxStatus().GetState(); st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Fatalf("STOPPED event: pod %s, want NOTREADY", st)
			}
			break
		}
	}
	notReady := func(pod string) {
		t.Helper()
		st, err := e.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod})
		if err != nil {
			t.Fatal(err)
		}
		if got := st.GetStatus().GetState(); got != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Fatalf("PodSandboxStatus of %s: %s, want NOTREADY", pod, got)
		}
		l, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: pod}})
		if err != nil || len(l.GetItems()) != 1 || l.GetItems()[0].GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Fatalf("ListPodSandbox of %s: %v %v, want one NOTREADY", pod, l.GetItems(), err)
		}
	}

	killPause(first, "uid-pausedies-a")
	notReady(first)

	e.d.Kill(t)
	e.d = e.d.Restart(t)
	e.rt = e.d.Runtime(t)
	// Cleanups run last first: remove the pods before this daemon stops.
	t.Cleanup(func() { e.removeAll(t) })
	notReady(first)
	killPause(second, "uid-pausedies-b")
	notReady(second)

	// The kubelet then stops and removes them, as any pod.
	for _, pod := range []string{first, second} {
		if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("stopping %s: %v", pod, err)
		}
		if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("removing %s: %v", pod, err)
		}
	}
}

// expectAny reads the next event, whatever it is.
func (es *eventStream) expectAny(t *testing.T) *runtimeapi.ContainerEventResponse {
	t.Helper()
	select {
	case ev := <-es.C:
		return ev
	case err := <-es.Done:
		t.Fatalf("event stream ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("no event within 30s")
	}
	return nil
}
