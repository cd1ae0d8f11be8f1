package cdi

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/noded-dev/noded/internal/errdefs"
)

// nullSpec defines vendor.example/test=null: /dev/null as /dev/noded-null,
// an environment variable, a mount and, for the whole spec, a hook and a
// variable.
const nullSpec = `{
  "cdiVersion": "0.6.0",
  "kind": "vendor.example/test",
  "devices": [{
    "name": "null",
    "containerEdits": {
      "deviceNodes": [{"path": "/dev/noded-null", "hostPath": "/dev/null"}],
      "env": ["CDI_DEVICE=null"],
      "mounts": [{"hostPath": "/etc/hostname", "containerPath": "/cdi/hostname", "options": ["ro", "bind"]}]
    }
  }],
  "containerEdits": {
    "env": ["CDI_SPEC=test"],
    "hooks": [{"hookName": "createContainer", "path": "/bin/true", "args": ["true"]}]
  }
}`

func writeSpec(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Env: []string{"PATH=/bin"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		}},
	}
}

func TestInject(t *testing.T) {
	static, dynamic := t.TempDir(), t.TempDir()
	writeSpec(t, static, "test.json", nullSpec)
	r, errs := New([]string{static, dynamic, filepath.Join(t.TempDir(), "missing")})
	if len(errs) != 0 {
		t.Fatalf("load errors: %v", errs)
	}
	if got := r.Devices(); !slices.Equal(got, []string{"vendor.example/test=null"}) {
		t.Fatalf("devices %v", got)
	}

	spec := baseSpec()
	if err := r.Inject(spec, []string{"vendor.example/test=null"}); err != nil {
		t.Fatal(err)
	}
	if len(spec.Linux.Devices) != 1 {
		t.Fatalf("devices %+v", spec.Linux.Devices)
	}
	d := spec.Linux.Devices[0]
	if d.Path != "/dev/noded-null" || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("device node %+v, want /dev/noded-null c 1:3", d)
	}
	rules := spec.Linux.Resources.Devices
	if last := rules[len(rules)-1]; !last.Allow || last.Type != "c" || *last.Major != 1 || *last.Minor != 3 || last.Access != "rwm" {
		t.Errorf("cgroup rules %+v", rules)
	}
	for _, e := range []string{"PATH=/bin", "CDI_DEVICE=null", "CDI_SPEC=test"} {
		if !slices.Contains(spec.Process.Env, e) {
			t.Errorf("env %v lacks %s", spec.Process.Env, e)
		}
	}
	if i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/cdi/hostname" }); i < 0 || spec.Mounts[i].Source != "/etc/hostname" {
		t.Errorf("mounts %+v", spec.Mounts)
	}
	if spec.Hooks == nil || len(spec.Hooks.CreateContainer) != 1 || spec.Hooks.CreateContainer[0].Path != "/bin/true" {
		t.Errorf("hooks %+v", spec.Hooks)
	}

	t.Run("a spec written after start is found without a restart", func(t *testing.T) {
		writeSpec(t, dynamic, "late.json", strings.ReplaceAll(nullSpec, "vendor.example/test", "vendor.example/late"))
		if err := r.Inject(baseSpec(), []string{"vendor.example/late=null"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unknown device", func(t *testing.T) {
		spec := baseSpec()
		before := baseSpec()
		err := r.Inject(spec, []string{"vendor.example/test=null", "vendor.example/test=gpu0"})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"vendor.example/test=gpu0"`) || strings.Contains(err.Error(), `"vendor.example/test=null"`) {
			t.Fatalf("err %v, want InvalidArgument naming only the unknown device", err)
		}
		if !reflect.DeepEqual(spec, before) {
			t.Errorf("a failed injection changed the spec: %+v", spec)
		}
	})

	t.Run("a broken spec is named with an unknown device", func(t *testing.T) {
		writeSpec(t, dynamic, "broken.json", `{"cdiVersion": "0.6.0", "kind": "vendor.example/broken", "devices": [{"name": ""}]}`)
		err := r.Inject(baseSpec(), []string{"vendor.example/broken=x"})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "broken.json") {
			t.Fatalf("err %v, want InvalidArgument naming broken.json", err)
		}
		// The other vendors' devices still work.
		if err := r.Inject(baseSpec(), []string{"vendor.example/test=null"}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a missing host device", func(t *testing.T) {
		writeSpec(t, dynamic, "gone.json", strings.ReplaceAll(strings.ReplaceAll(nullSpec, "vendor.example/test", "vendor.example/gone"), `"hostPath": "/dev/null"`, `"hostPath": "/dev/noded-no-such-device"`))
		err := r.Inject(baseSpec(), []string{"vendor.example/gone=null"})
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("err %v, want FailedPrecondition", err)
		}
	})
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"vendor.example/gpu=0", true},
		{"nvidia.com/gpu=all", true},
		{"gpu0", false},
		{"vendor.example/gpu", false},
		{"vendor.example/gpu=", false},
		{"", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckName(tc.name)
			if (err == nil) != tc.ok || (err != nil && !errdefs.IsInvalidArgument(err)) {
				t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
}

func TestDevicesFromAnnotations(t *testing.T) {
	for _, tc := range []struct {
		desc        string
		annotations map[string]string
		want        []string
		wantErr     bool
	}{
		{desc: "none", annotations: map[string]string{"io.kubernetes.container.name": "x"}},
		{desc: "in key order", annotations: map[string]string{
			"cdi.k8s.io/vendor.example_b": "vendor.example/dev=b",
			"cdi.k8s.io/vendor.example_a": "vendor.example/dev=a1,vendor.example/dev=a2",
			"other":                       "vendor.example/dev=x",
		}, want: []string{"vendor.example/dev=a1", "vendor.example/dev=a2", "vendor.example/dev=b"}},
		{desc: "a bad name", annotations: map[string]string{"cdi.k8s.io/p_d": "not-qualified"}, wantErr: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := DevicesFromAnnotations(tc.annotations)
			if tc.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
