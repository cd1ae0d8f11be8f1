package specgen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func specWithCaps(caps ...string) *specs.Spec {
	return &specs.Spec{Process: &specs.Process{Capabilities: fullSet(caps)}}
}

// allowed reports whether p has an allow rule naming syscall.
func allowed(p *specs.LinuxSeccomp, syscall string) bool {
	for _, s := range p.Syscalls {
		if s.Action == specs.ActAllow && slices.Contains(s.Names, syscall) {
			return true
		}
	}
	return false
}

func TestSeccompProfile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ociProfile := write("oci.json", `{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}`)
	badProfile := write("bad.json", `{"defaultAction":`)
	// root is a profile directory; outside.json is next to it, reached
	// from inside through ".." or a symlink.
	root := filepath.Join(dir, "profiles")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	inRoot := write("profiles/in.json", `{"defaultAction":"SCMP_ACT_LOG"}`)
	outside := write("outside.json", `{"defaultAction":"SCMP_ACT_LOG"}`)
	link := func(name, target string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	escaping := link("profiles/escape.json", "../outside.json")
	intoRoot := link("into-root.json", "profiles/in.json")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := write("huge.json", `{"defaultAction":"SCMP_ACT_LOG","x":"`+strings.Repeat("x", maxSeccompProfile)+`"}`)
	isDefault := func(t *testing.T, p *specs.LinuxSeccomp) {
		assertEqual(t, "default action", p.DefaultAction, specs.ActErrno)
	}
	isLog := func(t *testing.T, p *specs.LinuxSeccomp) {
		assertEqual(t, "default action", p.DefaultAction, specs.ActLog)
	}
	localhost := func(ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	runtimeDefault := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}

	for _, tc := range []struct {
		desc       string
		sp         *runtimeapi.SecurityProfile
		deprecated string
		privileged bool
		caps       []string
		root       string
		// unconfinedWhenEmpty is the node's seccomp-when-empty=unconfined.
		unconfinedWhenEmpty bool
		// check inspects a non-nil profile; nil want means no profile.
		check   func(*testing.T, *specs.LinuxSeccomp)
		wantErr error
	}{
		{desc: "nothing requested is the runtime default", check: isDefault},
		{desc: "nothing requested on an unconfined-when-empty node", unconfinedWhenEmpty: true},
		{desc: "deprecated runtime/default on an unconfined-when-empty node", deprecated: "runtime/default", unconfinedWhenEmpty: true, check: isDefault},
		{desc: "unconfined", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}},
		{desc: "runtime default", sp: runtimeDefault, caps: DefaultCapabilities(),
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				assertEqual(t, "default action", p.DefaultAction, specs.ActErrno)
				if !allowed(p, "read") || allowed(p, "mount") {
					t.Error("want read allowed and mount refused without CAP_SYS_ADMIN")
				}
			}},
		{desc: "runtime default follows capabilities", sp: runtimeDefault, caps: append(DefaultCapabilities(), "CAP_SYS_ADMIN"),
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				if !allowed(p, "mount") {
					t.Error("want mount allowed with CAP_SYS_ADMIN")
				}
			}},
		{desc: "privileged is never filtered", sp: runtimeDefault, privileged: true},
		{desc: "deprecated runtime/default", deprecated: "runtime/default",
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				assertEqual(t, "default action", p.DefaultAction, specs.ActErrno)
			}},
		{desc: "deprecated docker/default", deprecated: "docker/default",
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				assertEqual(t, "default action", p.DefaultAction, specs.ActErrno)
			}},
		{desc: "deprecated unconfined", deprecated: "unconfined"},
		{desc: "SecurityProfile wins over the deprecated path", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined},
			deprecated: "runtime/default"},
		{desc: "localhost OCI profile", sp: localhost(ociProfile),
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				assertEqual(t, "default action", p.DefaultAction, specs.ActLog)
				if !allowed(p, "getpid") {
					t.Error("want getpid allowed")
				}
			}},
		{desc: "deprecated localhost path", deprecated: "localhost/" + ociProfile,
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				assertEqual(t, "default action", p.DefaultAction, specs.ActLog)
			}},
		{desc: "localhost ref carrying the prefix", sp: localhost("localhost/" + ociProfile),
			check: func(t *testing.T, p *specs.LinuxSeccomp) {
				assertEqual(t, "default action", p.DefaultAction, specs.ActLog)
			}},
		{desc: "localhost relative path", sp: localhost("profiles/x.json"), wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost path with ..", sp: localhost(root + "/../outside.json"), wantErr: errdefs.ErrInvalidArgument},
		{desc: "deprecated localhost path with ..", deprecated: "localhost/" + root + "/../outside.json", wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost under the root", sp: localhost(inRoot), root: root, check: isLog},
		{desc: "localhost through a symlink into the root", sp: localhost(intoRoot), root: root, check: isLog},
		{desc: "localhost outside the root", sp: localhost(outside), root: root, wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost symlink escaping the root", sp: localhost(escaping), root: root, wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost symlink without a root", sp: localhost(escaping), check: isLog},
		{desc: "localhost endless device", sp: localhost("/dev/zero"), wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost FIFO", sp: localhost(fifo), wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost directory", sp: localhost(root), wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost oversized file", sp: localhost(huge), wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost missing file", sp: localhost(filepath.Join(dir, "none.json")), wantErr: errdefs.ErrNotFound},
		{desc: "localhost bad JSON", sp: localhost(badProfile), wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost_ref with another type",
			sp:      &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault, LocalhostRef: ociProfile},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "invalid deprecated string", deprecated: "my-profile", wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown profile type", sp: &runtimeapi.SecurityProfile{ProfileType: 9}, wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := seccompProfile(tc.sp, tc.deprecated, tc.privileged, specWithCaps(tc.caps...), &Node{SeccompProfileRoot: tc.root, SeccompUnconfinedWhenEmpty: tc.unconfinedWhenEmpty})
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			if tc.check == nil {
				if got != nil {
					t.Fatalf("want no seccomp profile, got %+v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("want a seccomp profile, got none")
			}
			tc.check(t, got)
		})
	}
}

func TestCheckAppArmor(t *testing.T) {
	for _, tc := range []struct {
		desc       string
		sp         *runtimeapi.SecurityProfile
		deprecated string
		wantErr    error
	}{
		{desc: "nothing requested"},
		{desc: "unconfined", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}},
		{desc: "deprecated unconfined", deprecated: "unconfined"},
		{desc: "runtime default cannot be honoured", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "localhost cannot be honoured", sp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "deprecated localhost", deprecated: "localhost/p", wantErr: errdefs.ErrInvalidArgument},
		{desc: "deprecated garbage", deprecated: "p", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			checkErr(t, checkAppArmor(tc.sp, tc.deprecated), tc.wantErr)
		})
	}
}

func TestMaskedPaths(t *testing.T) {
	for _, tc := range []struct {
		desc         string
		sc           *runtimeapi.LinuxContainerSecurityContext
		wantMasked   []string
		wantReadonly []string
	}{
		{desc: "defaults", sc: &runtimeapi.LinuxContainerSecurityContext{},
			wantMasked: DefaultMaskedPaths(), wantReadonly: DefaultReadonlyPaths()},
		{desc: "request lists", sc: &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}},
			wantMasked: []string{"/proc/kcore"}, wantReadonly: []string{"/proc/sys"}},
		{desc: "privileged has none", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, MaskedPaths: []string{"/proc/kcore"}}},
		// The kubelet's procMount: Unmasked: empty lists, hostUsers: false.
		{desc: "procMount Unmasked in a user namespace has none", sc: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}}}},
		{desc: "procMount Default in a user namespace is as sent", sc: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}},
			MaskedPaths:      DefaultMaskedPaths(), ReadonlyPaths: []string{"/proc/sys"}},
			wantMasked: DefaultMaskedPaths(), wantReadonly: []string{"/proc/sys"}},
		{desc: "empty lists in the host user namespace get the defaults", sc: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
			MaskedPaths:      []string{}, ReadonlyPaths: []string{}},
			wantMasked: DefaultMaskedPaths(), wantReadonly: DefaultReadonlyPaths()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			masked, readonly := maskedPaths(tc.sc)
			assertEqual(t, "masked", masked, tc.wantMasked)
			assertEqual(t, "readonly", readonly, tc.wantReadonly)
		})
	}
}
