//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criMetrics is one ListPodSandboxMetrics answer, read through the
// descriptors' label keys.
type criMetrics struct {
	keys map[string][]string // metric name → label keys
	pods []*runtimeapi.PodSandboxMetrics
}

func (e *podEnv) criMetrics(t *testing.T) criMetrics {
	t.Helper()
	ctx := context.Background()
	d, err := e.rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatalf("ListMetricDescriptors: %v", err)
	}
	m := criMetrics{keys: map[string][]string{}}
	for _, desc := range d.GetDescriptors() {
		m.keys[desc.GetName()] = desc.GetLabelKeys()
	}
	r, err := e.rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatalf("ListPodSandboxMetrics: %v\n%s", err, e.d.Log)
	}
	m.pods = r.GetPodMetrics()
	return m
}

func (m criMetrics) pod(id string) *runtimeapi.PodSandboxMetrics {
	for _, p := range m.pods {
		if p.GetPodSandboxId() == id {
			return p
		}
	}
	return nil
}

// labels maps a metric's label keys to its values; it fails on a metric
// whose values do not match its descriptor's keys.
func (m criMetrics) labels(t *testing.T, x *runtimeapi.Metric) map[string]string {
	t.Helper()
	keys, ok := m.keys[x.GetName()]
	if !ok || len(keys) != len(x.GetLabelValues()) {
		t.Fatalf("metric %s: values %q for keys %q", x.GetName(), x.GetLabelValues(), keys)
	}
	out := map[string]string{}
	for i, k := range keys {
		out[k] = x.GetLabelValues()[i]
	}
	return out
}

// find returns the metrics named name whose labels include want.
func (m criMetrics) find(t *testing.T, ms []*runtimeapi.Metric, name string, want map[string]string) []*runtimeapi.Metric {
	t.Helper()
	var out []*runtimeapi.Metric
	for _, x := range ms {
		if x.GetName() != name {
			continue
		}
		l := m.labels(t, x)
		match := true
		for k, v := range want {
			if l[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, x)
		}
	}
	return out
}

// one is the value of the single metric find finds.
func (m criMetrics) one(t *testing.T, ms []*runtimeapi.Metric, name string, want map[string]string) uint64 {
	t.Helper()
	found := m.find(t, ms, name, want)
	if len(found) != 1 {
		t.Fatalf("%s%v: %d metrics, want 1", name, want, len(found))
	}
	return found[0].GetValue().GetValue()
}

func (m criMetrics) container(id string) []*runtimeapi.Metric {
	for _, p := range m.pods {
		for _, c := range p.GetContainerMetrics() {
			if c.GetContainerId() == id {
				return c.GetMetrics()
			}
		}
	}
	return nil
}

// TestCRIMetrics runs two pods, one serving a file, and checks what the
// CRI metrics RPCs say of them: cadvisor's names and labels, the pod's
// network counters read in its own namespace (the served bytes show on
// the serving pod's eth0, not on the idle pod's), CPU time and memory from
// the container's and the pod's cgroups, the writable layer's size; and
// that a stopped pod is left out without an error.
func TestCRIMetrics(t *testing.T) {
	e := newPodEnv(t)
	const blobKiB = 4096
	// The blob is in the container's writable layer; httpd serves it.
	serve := fmt.Sprintf("mkdir -p /www && dd if=/dev/zero of=/www/blob bs=1024 count=%d 2>/dev/null && exec httpd -f -p 8080 -h /www", blobKiB)
	podA, ctrA, ipA := e.runPod(t, "metrics-a", []string{"sh", "-c", serve})
	podB, _, _ := e.runPod(t, "metrics-b", []string{"sleep", "3600"})

	before := e.criMetrics(t)
	for _, name := range []string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
		"container_network_receive_bytes_total", "container_fs_usage_bytes",
	} {
		if before.keys[name] == nil {
			t.Fatalf("no descriptor for %s", name)
		}
	}
	base := []string{"container", "id", "image", "name", "namespace", "pod"}
	for name, extra := range map[string][]string{
		"container_cpu_usage_seconds_total":     {"cpu"},
		"container_memory_working_set_bytes":    nil,
		"container_network_receive_bytes_total": {"interface"},
		"container_fs_usage_bytes":              {"device"},
		"container_memory_failures_total":       {"failure_type", "scope"},
	} {
		if want := append(slices.Clone(base), extra...); !slices.Equal(before.keys[name], want) {
			t.Errorf("%s label keys %q, want %q", name, before.keys[name], want)
		}
	}
	if before.pod(podA) == nil || before.pod(podB) == nil {
		t.Fatalf("pods %s %s not both in %d pod metrics", podA, podB, len(before.pods))
	}
	netLabels := func(pod string) map[string]string {
		return map[string]string{"pod": pod, "namespace": "it", "container": "", "interface": "eth0"}
	}
	txA0 := before.one(t, before.pod(podA).GetMetrics(), "container_network_transmit_bytes_total", netLabels("metrics-a"))
	rxA0 := before.one(t, before.pod(podA).GetMetrics(), "container_network_receive_bytes_total", netLabels("metrics-a"))
	txB0 := before.one(t, before.pod(podB).GetMetrics(), "container_network_transmit_bytes_total", netLabels("metrics-b"))

	// Traffic: the host downloads the blob from pod A over the bridge;
	// pod A burns a fixed amount of CPU (about two seconds of it).
	got := download(t, "http://"+net.JoinHostPort(ipA, "8080")+"/blob")
	if got != blobKiB*1024 {
		t.Fatalf("downloaded %d bytes, want %d", got, blobKiB*1024)
	}
	if r, err := e.exec(t, ctrA, 120, "sh", "-c", "dd if=/dev/zero bs=1048576 count=200 2>/dev/null | sha256sum"); err != nil || r.GetExitCode() != 0 {
		t.Fatalf("burning CPU: %v %q", err, r.GetStderr())
	}

	after := e.criMetrics(t)
	pa, pb := after.pod(podA), after.pod(podB)
	if pa == nil || pb == nil {
		t.Fatalf("pods %s %s not both in %d pod metrics", podA, podB, len(after.pods))
	}

	t.Cleanup(func() {
		if t.Failed() { // what pod A's metrics were, to see why
			for _, x := range append(slices.Clone(pa.GetMetrics()), after.container(ctrA)...) {
				t.Logf("%s%v %d", x.GetName(), x.GetLabelValues(), x.GetValue().GetValue())
			}
		}
	})

	t.Run("network from the pod's namespace", func(t *testing.T) {
		for _, p := range []*runtimeapi.PodSandboxMetrics{pa, pb} {
			var ifs []string
			for _, x := range after.find(t, p.GetMetrics(), "container_network_receive_bytes_total", nil) {
				ifs = append(ifs, after.labels(t, x)["interface"])
			}
			// Only the pod's own interfaces: no loopback, none of the host's
			// (the bridge, the veth ends, the host's uplink).
			if !slices.Equal(ifs, []string{"eth0"}) {
				t.Errorf("pod %s interfaces %q, want [eth0]", p.GetPodSandboxId(), ifs)
			}
		}
		txA := after.one(t, pa.GetMetrics(), "container_network_transmit_bytes_total", netLabels("metrics-a"))
		rxA := after.one(t, pa.GetMetrics(), "container_network_receive_bytes_total", netLabels("metrics-a"))
		txB := after.one(t, pb.GetMetrics(), "container_network_transmit_bytes_total", netLabels("metrics-b"))
		if txA-txA0 < blobKiB*1024 {
			t.Errorf("pod A sent %d bytes while serving %d", txA-txA0, blobKiB*1024)
		}
		if rxA <= rxA0 {
			t.Errorf("pod A received nothing (rx %d → %d) while serving", rxA0, rxA)
		}
		if txB-txB0 > 256*1024 {
			t.Errorf("idle pod B sent %d bytes: counters not per pod", txB-txB0)
		}
		for _, name := range []string{"container_network_receive_packets_total", "container_network_transmit_packets_total"} {
			if after.one(t, pa.GetMetrics(), name, netLabels("metrics-a")) == 0 {
				t.Errorf("%s of pod A is 0", name)
			}
		}
	})

	t.Run("container cgroup", func(t *testing.T) {
		cm := after.container(ctrA)
		if cm == nil {
			t.Fatalf("no metrics of container %s", ctrA)
		}
		want := map[string]string{"container": "main", "name": ctrA, "image": busyboxImage, "pod": "metrics-a", "namespace": "it"}
		cpu := after.find(t, cm, "container_cpu_usage_seconds_total", want)
		if len(cpu) != 1 {
			t.Fatalf("container_cpu_usage_seconds_total%v: %d metrics", want, len(cpu))
		}
		l := after.labels(t, cpu[0])
		if l["cpu"] != "total" || !strings.HasSuffix(l["id"], "/"+ctrA) {
			t.Errorf("cpu labels %v", l)
		}
		// The value is the cgroup's, in whole seconds.
		usage := readCgroupUint(t, "cpuacct", l["id"], "cpuacct.usage", "cpu.stat")
		if v := cpu[0].GetValue().GetValue(); v < 1 || v > usage/1e9 {
			t.Errorf("cpu seconds %d, cgroup says %d ns", v, usage)
		}
		if ws := after.one(t, cm, "container_memory_working_set_bytes", want); ws == 0 {
			t.Error("working set 0")
		}
		if n := after.one(t, cm, "container_processes", want); n < 1 {
			t.Errorf("%d processes", n)
		}
		// The blob is in the writable layer.
		fs := after.find(t, cm, "container_fs_usage_bytes", want)
		if len(fs) != 1 || fs[0].GetValue().GetValue() < blobKiB*1024 || after.labels(t, fs[0])["device"] == "" {
			t.Errorf("container_fs_usage_bytes %v", fs)
		}
		for _, name := range []string{"container_memory_usage_bytes", "container_fs_limit_bytes", "container_threads", "container_start_time_seconds", "container_spec_cpu_shares"} {
			if len(after.find(t, cm, name, want)) != 1 {
				t.Errorf("no %s", name)
			}
		}
	})

	t.Run("pod cgroup", func(t *testing.T) {
		want := map[string]string{"container": "", "pod": "metrics-a", "id": "/" + itCgroup + "/metrics-a", "name": podA}
		podCPU := after.one(t, pa.GetMetrics(), "container_cpu_usage_seconds_total", want)
		ctrCPU := after.one(t, after.container(ctrA), "container_cpu_usage_seconds_total", map[string]string{"container": "main"})
		if podCPU < ctrCPU {
			t.Errorf("pod cpu %d s < its container's %d s", podCPU, ctrCPU)
		}
		if after.one(t, pa.GetMetrics(), "container_memory_working_set_bytes", want) == 0 {
			t.Error("pod working set 0")
		}
	})

	t.Run("stopped pod", func(t *testing.T) {
		if _, err := e.rt.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podB}); err != nil {
			t.Fatal(err)
		}
		m := e.criMetrics(t)
		if m.pod(podB) != nil {
			t.Error("stopped pod still reported")
		}
		if m.pod(podA) == nil {
			t.Error("running pod no longer reported")
		}
	})
}

// download GETs url, retrying while the server starts, and returns the
// body's length.
func download(t *testing.T, url string) int64 {
	t.Helper()
	// Straight to the pod: no proxy from the environment.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var lastErr error
	for range 50 {
		resp, err := client.Get(url)
		if err == nil {
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return n
			}
			lastErr = err
			if err == nil {
				lastErr = fmt.Errorf("status %s", resp.Status)
			}
		} else {
			lastErr = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: %v", url, lastErr)
	return 0
}

// readCgroupUint reads a cgroup's CPU time in nanoseconds: the v1 file
// of the hierarchy named, or cgroup v2's cpu.stat usage_usec.
func readCgroupUint(t *testing.T, hierarchy, dir, v1File, v2File string) uint64 {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", hierarchy, dir, v1File)); err == nil {
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", dir, v2File))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n * 1000
		}
	}
	t.Fatalf("no usage_usec in %s", v2File)
	return 0
}
