package specgen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testHostCaps is what the test node holds: the defaults and a few more,
// but not CAP_SYS_RESOURCE (as on the development machine).
var testHostCaps = append(DefaultCapabilities(), "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_TIME")

// fakeFS is a HostFS with canned answers.
type fakeFS struct {
	devices map[string][]specs.LinuxDevice
	// missing bind sources fail; everything else resolves to itself unless
	// listed in links.
	missing map[string]bool
	links   map[string]string
	// shared and slave list mount sources by propagation.
	shared, slave map[string]bool
}

func (f *fakeFS) Devices(path string) ([]specs.LinuxDevice, error) {
	d, ok := f.devices[path]
	if !ok {
		return nil, fmt.Errorf("stat %s: %w", path, os.ErrNotExist)
	}
	// Callers rewrite paths: hand out a copy.
	return append([]specs.LinuxDevice{}, d...), nil
}

func (f *fakeFS) BindSource(path string) (string, error) {
	if f.missing[path] {
		return "", fmt.Errorf("mkdir %s: %w", path, os.ErrPermission)
	}
	if l, ok := f.links[path]; ok {
		return l, nil
	}
	return path, nil
}

func (f *fakeFS) MountPropagation(path string) (bool, bool, error) {
	return f.shared[path], f.slave[path], nil
}

func charDev(path string, major, minor int64) specs.LinuxDevice {
	uid, gid := uint32(0), uint32(0)
	return specs.LinuxDevice{Path: path, Type: "c", Major: major, Minor: minor, FileMode: fileMode(0o666), UID: &uid, GID: &gid}
}

func newFakeFS() *fakeFS {
	return &fakeFS{
		devices: map[string][]specs.LinuxDevice{
			"/dev/fuse": {charDev("", 10, 229)},
			"/dev/snd":  {charDev("controlC0", 116, 0), charDev("pcmC0D0p", 116, 16)},
			"/dev":      {charDev("null", 1, 3), charDev("fuse", 10, 229), charDev("snd/controlC0", 116, 0)},
		},
		shared: map[string]bool{"/mnt/shared": true},
		slave:  map[string]bool{"/mnt/slave": true},
	}
}

func testNode() Node {
	return Node{
		HostCapabilities: testHostCaps,
		Hostname:         "node1",
		FS:               newFakeFS(),
	}
}

// makeRootfs writes etc/passwd and etc/group (skipped when empty) into a
// temporary root file system.
func makeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"passwd": passwd, "group": group} {
		if body == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"app:x:1000:1000::/home/app:/bin/sh\n" +
		"web:x:33:33::/var/www:/bin/sh\n"
	testGroup = "root:x:0:\n" +
		"app:x:1000:\n" +
		"web:x:33:\n" +
		"audio:x:29:app\n" +
		"video:x:44:app,web\n" +
		"staff:x:50:\n"
)

// testContainer is a minimal valid input; mutate it per case.
func testContainer(t *testing.T) *Container {
	t.Helper()
	return &Container{
		ID:        "c1",
		SandboxID: "s1",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Command:  []string{"/bin/app"},
			Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
		},
		Sandbox: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "default", Uid: "uid-1"},
			Hostname: "pod-host",
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{}},
		},
		ImageName:  "docker.io/library/app:1",
		RootfsPath: makeRootfs(t, testPasswd, testGroup),
		Namespaces: NamespacesOfPID(42),
		Node:       testNode(),
	}
}

// checkErr fails unless err is nil when want is nil, or of want's class.
func checkErr(t *testing.T, err, want error) bool {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("want an error of class %v, got none", want)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("want an error of class %v, got %v", want, err)
	}
	return err == nil
}

func assertEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %#v\n want %#v", what, got, want)
	}
}
