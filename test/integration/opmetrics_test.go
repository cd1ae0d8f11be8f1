//go:build integration

package integration

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The metrics operators' dashboards expect beside the request and pull
// metrics (issue 15): OOM kills, errors by gRPC code, CNI ADD/DEL latency
// and the monitor calls.
func TestOperatorMetrics(t *testing.T) {
	e, addr := newMetricsPodEnv(t)
	ctx := context.Background()
	pcfg := e.podConfig("opmetrics")
	if err := os.MkdirAll(pcfg.LogDirectory, 0o755); err != nil {
		t.Fatal(err)
	}
	pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	// dd's 64 MiB buffer does not fit the 16 MiB limit: the OOM killer
	// ends it.
	ctr := e.startContainer(t, pod.GetPodSandboxId(), pcfg, "hog", &runtimeapi.ContainerConfig{
		Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=4"},
		Linux: &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
			MemoryLimitInBytes: 16 << 20, MemorySwapLimitInBytes: 16 << 20,
		}},
	})
	if st := e.waitExited(t, ctr, time.Minute); st.GetReason() != "OOMKilled" {
		t.Fatalf("the hog exited %d, reason %q, want OOMKilled", st.GetExitCode(), st.GetReason())
	}
	if _, err := e.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "0123456789ab-no-such"}); err == nil {
		t.Fatal("status of an unknown container answered")
	}
	if _, err := e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.GetPodSandboxId()}); err != nil {
		t.Fatal(err)
	}

	body := scrape(t, addr)
	for _, tc := range []struct {
		name, series string
		min          float64
	}{
		{"OOM kills", `noded_containers_oom_killed_total`, 1},
		{"errors by code", `noded_cri_requests_total{code="NotFound",method="ContainerStatus"}`, 1},
		{"CNI ADD latency", `noded_cni_operation_duration_seconds_count{operation="add",result="ok"}`, 1},
		{"CNI DEL latency", `noded_cni_operation_duration_seconds_count{operation="del",result="ok"}`, 1},
		{"monitor calls", `noded_monitor_calls_total{op="create",result="ok"}`, 1},
		{"monitor call latency", `noded_monitor_call_duration_seconds_count{op="start"}`, 1},
		{"pull metrics", `noded_image_pull_layers_unpacked_total`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := sample(body, tc.series)
			if !ok || v < tc.min {
				t.Errorf("%s = %v (present %v), want at least %v", tc.series, v, ok, tc.min)
			}
		})
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sample is the value of one series (name and labels exactly as exposed).
func sample(body, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}
