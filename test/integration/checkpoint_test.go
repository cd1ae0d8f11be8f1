//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testCriu finds a criu that passes `criu check`: $NODED_CRIU, the one
// test/criu/build-criu.sh caches (/var/cache/noded-test/criu-*/sbin), or
// criu on PATH; the test skips, saying why, without one.
func testCriu(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p := os.Getenv("NODED_CRIU"); p != "" {
		candidates = append(candidates, p)
	}
	cached, _ := filepath.Glob("/var/cache/noded-test/criu-*/sbin/criu")
	candidates = append(candidates, cached...)
	if p, err := exec.LookPath("criu"); err == nil {
		candidates = append(candidates, p)
	}
	var tried []string
	for _, p := range candidates {
		out, err := exec.Command(p, "check").CombinedOutput()
		if err == nil {
			return p
		}
		tried = append(tried, p+": "+strings.TrimSpace(lastLine(string(out))))
	}
	if len(tried) == 0 {
		t.Skip("no criu (test/criu/build-criu.sh builds one; or set NODED_CRIU)")
	}
	t.Skipf("no criu passes `criu check`: %s", strings.Join(tried, "; "))
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// counterScript prints 0, 1, 2, ... to stdout, its count only in memory.
const counterScript = `i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done`

// logCounts reads the numbers a counter logged (CRI log format).
func logCounts(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var counts []int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[1] != "stdout" {
			continue
		}
		n, err := strconv.Atoi(f[3])
		if err != nil {
			t.Fatalf("log line %q", line)
		}
		counts = append(counts, n)
	}
	return counts
}

// waitCounts waits until the counter's log has more than n numbers.
func waitCounts(t *testing.T, path string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			if c := logCounts(t, path); len(c) > n {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d counts after 30 s", path, n+1)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *podEnv) containerState(t *testing.T, ctr string) runtimeapi.ContainerState {
	t.Helper()
	st, err := e.rt.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: ctr})
	if err != nil {
		t.Fatal(err)
	}
	return st.GetStatus().GetState()
}

// TestCheckpointRestore checkpoints a counter whose count lives only in
// memory, with a file written to its root file system and one of the
// image's files deleted; checks that it keeps running, that checkpointctl
// reads the archive, then restores it into another pod: the count goes
// on from where it was, the file is there, the deleted one is not.
func TestCheckpointRestore(t *testing.T) {
	criu := testCriu(t)
	e := newPodEnv(t, "--criu-path", criu)
	ctx := context.Background()
	_, ctr, _ := e.runPod(t, "ckpt", []string{"sh", "-c", counterScript})
	logPath := filepath.Join(e.logDir, "ckpt", "main.log")
	waitCounts(t, logPath, 5)
	if r, err := e.exec(t, ctr, 10, "sh", "-c", "echo kept > /marker && rm /bin/uname"); err != nil || r.GetExitCode() != 0 {
		t.Fatalf("preparing the root file system: %v %s", err, r.GetStderr())
	}

	archive := filepath.Join(t.TempDir(), "ckpt.tar")
	before := len(logCounts(t, logPath))
	if _, err := e.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: ctr, Location: archive}); err != nil {
		t.Fatalf("CheckpointContainer: %v\n%s", err, e.d.Log)
	}
	t.Run("left running", func(t *testing.T) {
		if st := e.containerState(t, ctr); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container is %v after the checkpoint", st)
		}
		waitCounts(t, logPath, before+3)
	})
	t.Run("archive layout", func(t *testing.T) {
		names := tarNames(t, archive)
		for _, want := range []string{"checkpoint/inventory.img", "config.dump", "spec.dump", "status.dump", "rootfs-diff.tar", "deleted.files", "dump.log", "container.log"} {
			if !names[want] {
				t.Errorf("archive has no %s (has %v)", want, names)
			}
		}
	})
	t.Run("checkpointctl show", func(t *testing.T) {
		bin := filepath.Join(repoRoot(), "_build", "tools", "checkpointctl")
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("checkpointctl not built (%v): run scripts/install-test-deps.sh", err)
		}
		out, err := exec.Command(bin, "show", archive).CombinedOutput()
		if err != nil {
			t.Fatalf("checkpointctl show: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), ctr[:12]) || !strings.Contains(string(out), "noded") {
			t.Errorf("checkpointctl show does not name the container and noded:\n%s", out)
		}
		t.Logf("checkpointctl show:\n%s", out)
	})
	dumped := logCounts(t, logPath)

	// Another pod: the restored container gets its network, IPC and UTS
	// namespaces, mounts and cgroups.
	pcfg := e.podConfig("restored")
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	created, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
			Image:    &runtimeapi.ImageSpec{Image: archive},
			LogPath:  "main.log",
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer from the archive: %v\n%s", err, e.d.Log)
	}
	restored := created.GetContainerId()
	if st := e.containerState(t, restored); st != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("restored container is %v before its start", st)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: restored}); err != nil {
		t.Fatalf("StartContainer (restore): %v\n%s", err, e.d.Log)
	}
	t.Run("count goes on", func(t *testing.T) {
		counts := waitCounts(t, filepath.Join(pcfg.LogDirectory, "main.log"), 3)
		first := counts[0]
		// The dump came after `before` counts and before `dumped`.
		if first < before || first > dumped[len(dumped)-1]+1 {
			t.Errorf("restored counter starts at %d; the original had logged %d numbers at the checkpoint, %d at its end", first, before, len(dumped))
		}
		t.Logf("the original had logged %d numbers at the checkpoint; the restored one goes on from %d: %v", before, first, counts)
		for i := 1; i < len(counts); i++ {
			if counts[i] != counts[i-1]+1 {
				t.Fatalf("restored counts are not consecutive: %v", counts)
			}
		}
		if st := e.containerState(t, restored); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("restored container is %v", st)
		}
	})
	t.Run("root file system", func(t *testing.T) {
		r, err := e.exec(t, restored, 10, "cat", "/marker")
		if err != nil || strings.TrimSpace(string(r.GetStdout())) != "kept" {
			t.Errorf("/marker after the restore: %v %q %q", err, r.GetStdout(), r.GetStderr())
		}
		if r, err := e.exec(t, restored, 10, "ls", "/bin/uname"); err != nil || r.GetExitCode() == 0 {
			t.Errorf("/bin/uname, deleted before the checkpoint, is back: %v %q", err, r.GetStdout())
		}
	})
	t.Run("stop and remove", func(t *testing.T) {
		if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: restored, Timeout: 1}); err != nil {
			t.Fatal(err)
		}
		// The restored init is the monitor's child: its real exit status.
		st, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: restored})
		if err != nil {
			t.Fatal(err)
		}
		if code := st.GetStatus().GetExitCode(); (code != 137 && code != 143) || st.GetStatus().GetReason() == "Unknown" {
			t.Errorf("restored container stopped with %d (%s), want 137 or 143", code, st.GetStatus().GetReason())
		}
		if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: restored}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCheckpointErrors checks the refusals: what is not running, unknown,
// or asked to go somewhere it cannot, and archives noded cannot restore;
// none leaves a file or a container behind.
func TestCheckpointErrors(t *testing.T) {
	criu := testCriu(t)
	e := newPodEnv(t, "--criu-path", criu)
	ctx := context.Background()
	podID, running, _ := e.runPod(t, "errs", []string{"sleep", "3600"})
	pcfg := e.podConfig("errs")
	exited := e.createStart(t, podID, pcfg, "exits", []string{"true"})
	e.waitExited(t, exited, 30*time.Second)
	c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "created"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage}, Command: []string{"sleep", "1"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	createdOnly := c.GetContainerId()
	dir := t.TempDir()
	loc := filepath.Join(dir, "c.tar")

	for _, tc := range []struct {
		desc, ctr, location string
		want                codes.Code
	}{
		{"exited", exited, loc, codes.FailedPrecondition},
		{"created, not started", createdOnly, loc, codes.FailedPrecondition},
		{"unknown container", "0123456789abcdef", loc, codes.NotFound},
		{"relative location", running, "c.tar", codes.InvalidArgument},
		{"empty location", running, "", codes.InvalidArgument},
		{"missing directory", running, filepath.Join(dir, "no", "c.tar"), codes.InvalidArgument},
		{"location is a directory", running, dir, codes.InvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := e.rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: tc.ctr, Location: tc.location})
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("files left in the location's directory: %v", left)
			}
		})
	}
	if st := e.containerState(t, running); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("the running container is %v after the refusals", st)
	}

	foreign := filepath.Join(dir, "foreign.tar")
	writeTar(t, foreign, map[string]string{
		"config.dump":              `{"id":"abc","name":"x","runtime":"runc","createdTime":"2026-01-01T00:00:00Z"}`,
		"spec.dump":                `{"ociVersion":"1.0.0","process":{"args":["sh"]}}`,
		"checkpoint/inventory.img": "x",
	})
	wrongFormat := filepath.Join(dir, "format.tar")
	writeTar(t, wrongFormat, map[string]string{
		"config.dump":              `{"id":"abc","name":"x","runtime":"noded","noded":{"format":99,"version":"9.9","containerConfig":{},"imageId":"sha256:00"}}`,
		"spec.dump":                `{"ociVersion":"1.0.0","process":{"args":["sh"]}}`,
		"checkpoint/inventory.img": "x",
	})
	corrupt := filepath.Join(dir, "corrupt.tar")
	if err := os.WriteFile(corrupt, bytes.Repeat([]byte("not a tar archive "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ desc, path, msg string }{
		{"another runtime's archive", foreign, "another runtime"},
		{"another format version", wrongFormat, "format 99"},
		{"a corrupt archive", corrupt, "not a readable tar archive"},
		{"no such archive", filepath.Join(dir, "none.tar"), "no such file"},
	} {
		t.Run("restore "+tc.desc, func(t *testing.T) {
			_, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
				PodSandboxId: podID, SandboxConfig: pcfg,
				Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "restored"}, Image: &runtimeapi.ImageSpec{Image: tc.path}},
			})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want InvalidArgument saying %q", err, tc.msg)
			}
		})
	}
	list, err := e.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.GetContainers() {
		if c.GetMetadata().GetName() == "restored" {
			t.Errorf("a refused restore left container %s", c.GetId())
		}
	}
}

func tarNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names[strings.TrimPrefix(h.Name, "./")] = true
	}
	return names
}

func writeTar(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointPod checkpoints two counters of a pod in one cut, checks
// the refusals and that a deadline, wherever it falls, leaves the pod
// running and the directory empty, then restores the pod: its containers
// are CREATED until started, and then count on.
func TestCheckpointPod(t *testing.T) {
	criu := testCriu(t)
	e := newPodEnv(t, "--criu-path", criu)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	podID, a, _ := e.runPod(t, "podck", []string{"sh", "-c", counterScript})
	pcfg := e.podConfig("podck")
	b := e.createStart(t, podID, pcfg, "second", []string{"sh", "-c", counterScript})
	logA, logB := filepath.Join(pcfg.LogDirectory, "main.log"), filepath.Join(pcfg.LogDirectory, "second.log")
	waitCounts(t, logA, 3)
	waitCounts(t, logB, 3)
	_, other, _ := e.runPod(t, "podck-other", []string{"sleep", "3600"})
	exited := e.createStart(t, podID, pcfg, "exits", []string{"true"})
	e.waitExited(t, exited, 30*time.Second)

	stillRunning := func(t *testing.T) {
		t.Helper()
		for _, l := range []string{logA, logB} {
			n := len(logCounts(t, l))
			waitCounts(t, l, n+2) // counting, so neither frozen nor dead
		}
	}
	emptyDir := func(t *testing.T) string {
		dir, err := os.MkdirTemp(t.TempDir(), "pod-")
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// waitEmpty waits for the server's clean-up of a failed call, which
	// may end after the client's deadline.
	waitEmpty := func(t *testing.T, dir string) {
		t.Helper()
		for i := 0; ; i++ {
			left, _ := os.ReadDir(dir)
			if len(left) == 0 {
				return
			}
			if i == 600 {
				t.Fatalf("files left in %s: %v", dir, left)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("refusals", func(t *testing.T) {
		full := emptyDir(t)
		if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			desc string
			req  *runtimeapi.CheckpointPodRequest
			want codes.Code
		}{
			{"an option", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a}, Options: map[string]string{"leave-running": "false"}}, codes.InvalidArgument},
			{"no container", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID}, codes.InvalidArgument},
			{"a container twice", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a, a}}, codes.InvalidArgument},
			{"another pod's container", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a, other}}, codes.InvalidArgument},
			{"an exited container", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a, exited}}, codes.FailedPrecondition},
			{"an unknown pod", &runtimeapi.CheckpointPodRequest{PodSandboxId: "0123456789abcdef", ContainerIds: []string{a}}, codes.NotFound},
			{"a relative path", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a}, OutputPath: "out"}, codes.InvalidArgument},
			{"a directory not empty", &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a}, OutputPath: full}, codes.InvalidArgument},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				dir := tc.req.OutputPath
				if dir == "" {
					dir = emptyDir(t)
					tc.req.OutputPath = dir
				}
				if _, err := e.rt.CheckpointPod(ctx, tc.req); status.Code(err) != tc.want {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if dir != full && dir != "out" {
					waitEmpty(t, dir)
				}
			})
		}
		stillRunning(t)
	})

	t.Run("deadlines", func(t *testing.T) {
		// Wherever the deadline falls (before the pauses, between them,
		// during a dump, while an archive is written), the pod must be
		// running afterwards and the directory empty; a long enough one
		// succeeds.
		for _, d := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond, time.Second} {
			dir := emptyDir(t)
			dctx, dcancel := context.WithTimeout(ctx, d)
			_, err := e.rt.CheckpointPod(dctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a, b}, OutputPath: dir})
			dcancel()
			t.Logf("deadline %v: %v", d, err)
			if err != nil {
				if c := status.Code(err); c != codes.DeadlineExceeded {
					t.Errorf("deadline %v: got %v, want DeadlineExceeded", d, err)
				}
				waitEmpty(t, dir)
			}
			stillRunning(t)
		}
	})

	dir := emptyDir(t)
	if _, err := e.rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a, b}, OutputPath: dir}); err != nil {
		t.Fatalf("CheckpointPod: %v\n%s", err, e.d.Log)
	}
	at := map[string]int{"main": len(logCounts(t, logA)), "second": len(logCounts(t, logB))}
	for _, f := range []string{"pod.options", "pod.dump", "main.tar", "second.tar"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("pod checkpoint: %v", err)
		}
	}
	stillRunning(t)

	rcfg := e.podConfig("podck-restored")
	if err := os.MkdirAll(rcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	ctrCfg := func(name string) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: busyboxImage},
			Command: []string{"sh", "-c", counterScript}, LogPath: name + ".log",
		}
	}
	countPods := func(t *testing.T) int {
		l, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.GetItems())
	}
	t.Run("restore refusals", func(t *testing.T) {
		pods := countPods(t)
		wrongCmd := ctrCfg("second")
		wrongCmd.Command = []string{"sleep", "1"}
		for _, tc := range []struct {
			desc string
			req  *runtimeapi.RestorePodRequest
		}{
			{"a container missing", &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: rcfg, ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main")}}},
			{"an unknown container", &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: rcfg, ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main"), ctrCfg("second"), ctrCfg("third")}}},
			{"another command", &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: rcfg, ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main"), wrongCmd}}},
			{"an option", &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: rcfg, Options: map[string]string{"x": "y"}, ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main"), ctrCfg("second")}}},
			{"an unknown handler", &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: rcfg, RuntimeHandler: "kata", ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main"), ctrCfg("second")}}},
			{"not a pod checkpoint", &runtimeapi.RestorePodRequest{CheckpointPath: t.TempDir(), Config: rcfg, ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main")}}},
		} {
			t.Run(tc.desc, func(t *testing.T) {
				if _, err := e.rt.RestorePod(ctx, tc.req); status.Code(err) != codes.InvalidArgument {
					t.Fatalf("got %v, want InvalidArgument", err)
				}
				if n := countPods(t); n != pods {
					t.Errorf("%d pods after a refused restore, %d before", n, pods)
				}
			})
		}
	})

	resp, err := e.rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{
		CheckpointPath: dir, Config: rcfg, ContainerConfigs: []*runtimeapi.ContainerConfig{ctrCfg("main"), ctrCfg("second")},
	})
	if err != nil {
		t.Fatalf("RestorePod: %v\n%s", err, e.d.Log)
	}
	if resp.GetPodSandboxId() == "" || len(resp.GetRestoredContainers()) != 2 {
		t.Fatalf("RestorePod answered %v", resp)
	}
	for _, rc := range resp.GetRestoredContainers() {
		if st := e.containerState(t, rc.GetContainerId()); st != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Errorf("%s is %v before its start", rc.GetName(), st)
		}
		if _, err := os.Stat(filepath.Join(rcfg.LogDirectory, rc.GetName()+".log")); err == nil && len(logCounts(t, filepath.Join(rcfg.LogDirectory, rc.GetName()+".log"))) > 0 {
			t.Errorf("%s ran before its start", rc.GetName())
		}
	}
	for _, rc := range resp.GetRestoredContainers() {
		if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: rc.GetContainerId()}); err != nil {
			t.Fatalf("StartContainer %s: %v\n%s", rc.GetName(), err, e.d.Log)
		}
	}
	for _, rc := range resp.GetRestoredContainers() {
		counts := waitCounts(t, filepath.Join(rcfg.LogDirectory, rc.GetName()+".log"), 2)
		t.Logf("%s: %d numbers logged at the pod checkpoint, restored from %d", rc.GetName(), at[rc.GetName()], counts[0])
		if counts[0] < 3 {
			t.Errorf("%s restored from %d: it started over", rc.GetName(), counts[0])
		}
	}
}

// TestCheckpointPodKilled kills noded (SIGKILL) at several moments of a
// CheckpointPod and restarts it: wherever the kill fell, the pod's
// containers run (none stays frozen), the directory is empty or holds a
// whole checkpoint, and no marker is left.
func TestCheckpointPodKilled(t *testing.T) {
	criu := testCriu(t)
	e := newPodEnv(t, "--criu-path", criu)
	podID, a, _ := e.runPod(t, "podkill", []string{"sh", "-c", counterScript})
	pcfg := e.podConfig("podkill")
	b := e.createStart(t, podID, pcfg, "second", []string{"sh", "-c", counterScript})
	logs := []string{filepath.Join(pcfg.LogDirectory, "main.log"), filepath.Join(pcfg.LogDirectory, "second.log")}
	for _, l := range logs {
		waitCounts(t, l, 2)
	}
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond, 250 * time.Millisecond} {
		dir, err := os.MkdirTemp(t.TempDir(), "pod-")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := e.rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, ContainerIds: []string{a, b}, OutputPath: dir})
			done <- err
		}()
		time.Sleep(delay)
		e.d.Kill(t)
		err = <-done
		e.d = e.d.Restart(t)
		e.rt = e.d.Runtime(t)
		// Cleanups run last first: remove the pods before this daemon
		// stops (once: the last restart's removes them all).
		t.Cleanup(func() { e.removeAll(t) })
		t.Logf("killed after %v: the call answered %v; the restart finished a checkpoint left in progress: %v",
			delay, err, strings.Contains(e.d.Log.String(), "finished a checkpoint a killed noded left"))
		for _, c := range []string{a, b} {
			if st := e.containerState(t, c); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Fatalf("killed after %v: container %s is %v", delay, c, st)
			}
		}
		for _, l := range logs {
			waitCounts(t, l, len(logCounts(t, l))+2) // not frozen
		}
		left, _ := os.ReadDir(dir)
		if len(left) != 0 {
			for _, f := range []string{"pod.options", "pod.dump", "main.tar", "second.tar"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("killed after %v: the directory holds %v, neither nothing nor a whole checkpoint", delay, left)
					break
				}
			}
		}
		if markers, _ := os.ReadDir(filepath.Join(e.d.Dir, "state", "checkpoints")); len(markers) != 0 {
			t.Errorf("killed after %v: markers left: %v", delay, markers)
		}
	}
}
