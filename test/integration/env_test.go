//go:build integration

package integration

import (
	"bytes"
	"context"
	"testing"
	"unicode/utf8"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestEnvironmentBytes: since cri-api v0.36.2 an environment value is
// bytes, and a kubelet may send values that are not UTF-8 (k/k #139132).
// CreateContainer must accept them; the process sees valid UTF-8 as sent
// and each byte that is not UTF-8 as U+FFFD, the JSON coercion the OCI
// spec and libcontainer's init pipe impose on every runc-based runtime.
func TestEnvironmentBytes(t *testing.T) {
	e := newPodEnv(t)
	ctx := context.Background()
	pcfg := e.podConfig("envbytes")
	pod, err := e.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatal(err)
	}
	values := map[string][]byte{
		"LATIN1": {'c', 'a', 'f', 0xe9},
		"BINARY": {0xff, 0xfe, 0x01, 'x'},
		"UTF8":   []byte("grüße"),
	}
	var envs []*runtimeapi.KeyValue
	for k, v := range values {
		envs = append(envs, &runtimeapi.KeyValue{Key: k, Value: v})
	}
	c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.GetPodSandboxId(), SandboxConfig: pcfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
			Image:    &runtimeapi.ImageSpec{Image: busyboxImage},
			Command:  []string{"sleep", "3600"},
			Envs:     envs,
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer with non-UTF-8 environment values: %v", err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.GetContainerId()}); err != nil {
		t.Fatal(err)
	}
	for k, want := range values {
		t.Run(k, func(t *testing.T) {
			// The container's own environment, as the kernel holds it.
			r, err := e.exec(t, c.GetContainerId(), 10, "sh", "-c", "cat /proc/$(pidof sleep)/environ")
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			found := false
			for _, kv := range bytes.Split(r.GetStdout(), []byte{0}) {
				if v, ok := bytes.CutPrefix(kv, []byte(k+"=")); ok {
					got, found = v, true
				}
			}
			if want := jsonCoerced(want); !found || !bytes.Equal(got, want) {
				t.Errorf("%s in the container: %q (found %v), want %q", k, got, found, want)
			}
		})
	}
}

// jsonCoerced is b as encoding/json carries it: each byte that does not
// start a valid UTF-8 sequence becomes U+FFFD.
func jsonCoerced(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}
