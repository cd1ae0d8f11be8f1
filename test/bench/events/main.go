// Command events measures how long a container's exit takes to reach a
// GetContainerEvents subscriber (the kubelet's EventedPLEG): noded runs on
// private directories with one host-network pod; N times, a busybox
// `sleep` container is created and started in it, killed from the host
// (SIGKILL to its process), and the time until its CONTAINER_STOPPED event
// arrives is taken, on the subscriber that measures while others
// subscribe too; then the container is removed.
//
// An exit is recorded durably twice: by the pod's monitor (its state
// file) and by noded (its record), each an atomic write with two fsyncs.
// Neither is on the way to the event any more (the monitor answers noded
// before its write, noded publishes before its own; conmon-go's
// transition and state.Store.RecordContainerExit say why that loses
// nothing on a kill -9). -dir puts every directory of noded (records,
// monitor state, storage) there instead of /tmp: a tmpfs such as /dev/shm
// shows what the fsyncs still cost.
//
// Three spans per exit, on this host's one clock:
//
//	kill → event     SIGKILL sent here to the event received here: the
//	                 whole path (kernel exit, the monitor's reap and
//	                 notification, noded's record, statuses, gRPC)
//	exit → event     the exit time the monitor recorded (finished_at)
//	                 to the event received
//	noded → event    the event's created_at to its receipt (statuses
//	                 built, queue, gRPC)
//
// Then -status more containers are killed the same way while
// ContainerStatus is asked every 200 µs (no subscriber measures), to see how
// soon a status call shows the exit, the kubelet's other way to learn it:
//
//	kill → status    SIGKILL sent to the first ContainerStatus that
//	                 answers EXITED
//	exit → status    finished_at to that answer
//
// It prints p50/p95/max of each; it asserts nothing. Run it as root on an
// otherwise idle machine: `make bench-events`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/test/testenv"
)

const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"

func main() {
	exits := flag.Int("exits", 100, "containers killed, one after another")
	subscribers := flag.Int("subscribers", 3, "subscribers at once (one measures, the others read too)")
	statuses := flag.Int("status", 50, "containers killed while ContainerStatus is polled, after the measured events")
	base := flag.String("dir", "", "parent directory of noded's directories (empty: the system's temporary directory)")
	logLevel := flag.String("log-level", "info", "noded's log level")
	flag.Parse()
	if err := run(*exits, *subscribers, *statuses, *logLevel, *base); err != nil {
		fmt.Fprintln(os.Stderr, "bench-events:", err)
		os.Exit(1)
	}
}

// received is one event and when it came.
type received struct {
	ev *runtimeapi.ContainerEventResponse
	at time.Time
}

func run(exits, subscribers, statuses int, logLevel, base string) (retErr error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root")
	}
	dir, err := os.MkdirTemp(base, "noded-bench-events-")
	if err != nil {
		return err
	}
	defer func() { _ = testenv.CleanupDir(dir) }()
	reg, err := testenv.StartRegistry(dir)
	if err != nil {
		return err
	}
	defer reg.Close()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(testenv.InsecurePolicy), 0o644); err != nil {
		return err
	}
	cgroup := fmt.Sprintf("noded-bench-events-%d", os.Getpid()%10000)
	defer func() { _ = testenv.RemoveCgroupTree(cgroup) }()
	d, err := testenv.Start(testenv.Options{Dir: dir, Args: []string{
		"--registries-conf", reg.RegistriesConf, "--signature-policy", policy, "--log-level", logLevel,
	}})
	if err != nil {
		return err
	}
	defer func() {
		if err := d.Stop(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	rt := d.Runtime()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := d.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		return err
	}

	// The measuring subscriber and the others, each subscribed (headers
	// received) before anything happens.
	var measure chan received
	for i := range subscribers {
		s, err := rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
		if err != nil {
			return err
		}
		if _, err := s.Header(); err != nil {
			return err
		}
		ch := make(chan received, 4*exits+16)
		if i == 0 {
			measure = ch
		}
		go func() {
			for {
				ev, err := s.Recv()
				if err != nil {
					if status.Code(err) != codes.Canceled {
						fmt.Fprintln(os.Stderr, "bench-events: subscriber ended:", err)
					}
					close(ch)
					return
				}
				select {
				case ch <- received{ev: ev, at: time.Now()}:
				default: // a reader that is not the measuring one drops
				}
			}
		}()
	}

	pcfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "events", Namespace: "bench", Uid: "uid-events"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    "/" + cgroup + "/events",
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}},
		},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		return err
	}
	defer func() {
		if _, err := rt.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.GetPodSandboxId()}); err != nil && retErr == nil {
			retErr = err
		}
	}()

	// start creates and starts the attempt'th sleep container.
	start := func(attempt int) (id string, pid int, _ error) {
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: pcfg,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "sleep", Attempt: uint32(attempt)},
				Image:    &runtimeapi.ImageSpec{Image: image},
				Command:  []string{"sleep", "3600"},
			},
		})
		if err != nil {
			return "", 0, err
		}
		id = c.GetContainerId()
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			return "", 0, err
		}
		pid, err = containerPid(ctx, rt, id)
		return id, pid, err
	}

	var killToEvent, exitToEvent, nodedToEvent []time.Duration
	for i := range exits {
		id, pid, err := start(i)
		if err != nil {
			return err
		}
		// The created and started events are not measured.
		for len(measure) > 0 {
			<-measure
		}
		sent := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("killing container %s (pid %d): %w", id, pid, err)
		}
		r, err := waitStopped(measure, id, 30*time.Second)
		if err != nil {
			return err
		}
		killToEvent = append(killToEvent, r.at.Sub(sent))
		nodedToEvent = append(nodedToEvent, r.at.Sub(time.Unix(0, r.ev.GetCreatedAt())))
		for _, st := range r.ev.GetContainersStatuses() {
			if st.GetId() == id && st.GetFinishedAt() != 0 {
				exitToEvent = append(exitToEvent, r.at.Sub(time.Unix(0, st.GetFinishedAt())))
			}
		}
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			return err
		}
	}
	var killToStatus, exitToStatus []time.Duration
	for i := range statuses {
		id, pid, err := start(exits + i)
		if err != nil {
			return err
		}
		sent := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("killing container %s (pid %d): %w", id, pid, err)
		}
		st, at, err := waitExited(ctx, rt, id, 30*time.Second)
		if err != nil {
			return err
		}
		killToStatus = append(killToStatus, at.Sub(sent))
		exitToStatus = append(exitToStatus, at.Sub(time.Unix(0, st.GetFinishedAt())))
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			return err
		}
	}
	fmt.Printf("container exit → CONTAINER_STOPPED at a subscriber: %d exits, %d subscribers, noded's directories in %s\n", exits, subscribers, dir)
	report("kill → event", killToEvent)
	report("exit → event", exitToEvent)
	report("noded → event", nodedToEvent)
	fmt.Printf("container exit → ContainerStatus EXITED, polled: %d exits\n", statuses)
	report("kill → status", killToStatus)
	report("exit → status", exitToStatus)
	return nil
}

// waitExited asks ContainerStatus in a loop until it reports id exited,
// and returns that status and when it came.
func waitExited(ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string, within time.Duration) (*runtimeapi.ContainerStatus, time.Time, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		r, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			return nil, time.Time{}, err
		}
		if st := r.GetStatus(); st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st, time.Now(), nil
		}
		// A pause, so that the loop does not take the CPU the exit needs
		// (2 cores); it adds at most this much to the figures.
		time.Sleep(200 * time.Microsecond)
	}
	return nil, time.Time{}, fmt.Errorf("ContainerStatus of %s not EXITED within %s", id, within)
}

// waitStopped reads events until id's STOPPED one.
func waitStopped(ch <-chan received, id string, within time.Duration) (received, error) {
	timeout := time.After(within)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return received{}, errors.New("measuring subscriber's stream ended")
			}
			if r.ev.GetContainerId() == id && r.ev.GetContainerEventType() == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
				return r, nil
			}
		case <-timeout:
			return received{}, fmt.Errorf("no STOPPED event for %s within %s", id, within)
		}
	}
}

func containerPid(ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string) (int, error) {
	st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return 0, err
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		return 0, fmt.Errorf("container %s: verbose info %v: %w", id, st.GetInfo(), err)
	}
	if info.Pid <= 0 {
		return 0, fmt.Errorf("container %s: no pid in %v", id, st.GetInfo())
	}
	return info.Pid, nil
}

func report(what string, ds []time.Duration) {
	if len(ds) == 0 {
		fmt.Printf("  %-14s no samples\n", what)
		return
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	pct := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	fmt.Printf("  %-14s p50 %8s   p95 %8s   max %8s   (n=%d)\n", what,
		pct(0.50).Round(10*time.Microsecond), pct(0.95).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond), len(s))
}
