package specgen

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestCapabilities(t *testing.T) {
	def := DefaultCapabilities()
	without := func(list []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return slices.Contains(drop, s) })
	}
	for _, tc := range []struct {
		desc        string
		caps        *runtimeapi.Capability
		privileged  bool
		hostCaps    []string
		defaultCaps []string
		want        []string // bounding = effective = permitted
		wantAmbient []string
		wantErr     error
	}{
		{desc: "defaults", want: def},
		{desc: "add without prefix", caps: &runtimeapi.Capability{AddCapabilities: []string{"sys_admin"}},
			want: append(slices.Clone(def), "CAP_SYS_ADMIN")},
		{desc: "add with prefix, twice", caps: &runtimeapi.Capability{AddCapabilities: []string{"CAP_NET_ADMIN", "NET_ADMIN"}},
			want: append(slices.Clone(def), "CAP_NET_ADMIN")},
		{desc: "drop", caps: &runtimeapi.Capability{DropCapabilities: []string{"SETUID", "cap_kill"}},
			want: without(def, "CAP_SETUID", "CAP_KILL")},
		{desc: "add one of the larger sets' defaults", caps: &runtimeapi.Capability{AddCapabilities: []string{"NET_RAW"}},
			want: append(slices.Clone(def), "CAP_NET_RAW")},
		{desc: "drop ALL then add one", caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}},
			want: []string{"CAP_NET_BIND_SERVICE"}},
		{desc: "drop all (lower case)", caps: &runtimeapi.Capability{DropCapabilities: []string{"all"}},
			want: []string{}},
		{desc: "add ALL gives what the host holds", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}},
			want: testHostCaps},
		{desc: "add ALL and drop one", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"SYS_ADMIN"}},
			want: without(testHostCaps, "CAP_SYS_ADMIN")},
		{desc: "add ALL and drop ALL", caps: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"ALL"}},
			want: []string{}},
		{desc: "privileged gets the host's set and ignores drops", privileged: true,
			caps: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}, want: testHostCaps},
		{desc: "defaults the host lacks are left out", hostCaps: []string{"CAP_CHOWN", "CAP_KILL"},
			want: []string{"CAP_CHOWN", "CAP_KILL"}},
		{desc: "configured default set", defaultCaps: []string{"CAP_KILL"}, want: []string{"CAP_KILL"}},
		{desc: "ambient goes to every set",
			caps:        &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}},
			want:        []string{"CAP_NET_BIND_SERVICE"},
			wantAmbient: []string{"CAP_NET_BIND_SERVICE"}},
		{desc: "dropped ambient is not ambient",
			caps:        &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"NET_ADMIN"}},
			want:        def,
			wantAmbient: nil},
		{desc: "unknown name", caps: &runtimeapi.Capability{AddCapabilities: []string{"CAP_FLY"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown drop name", caps: &runtimeapi.Capability{DropCapabilities: []string{"FLY"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown ambient name", caps: &runtimeapi.Capability{AddAmbientCapabilities: []string{"FLY"}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "known but not held", caps: &runtimeapi.Capability{AddCapabilities: []string{"SYS_RESOURCE"}}, wantErr: errdefs.ErrFailedPrecondition},
		{desc: "dropping one not held is fine", caps: &runtimeapi.Capability{DropCapabilities: []string{"SYS_RESOURCE"}}, want: def},
		{desc: "host capabilities unknown", hostCaps: []string(nil), wantErr: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			node := testNode()
			if tc.hostCaps != nil || tc.desc == "host capabilities unknown" {
				node.HostCapabilities = tc.hostCaps
			}
			node.DefaultCapabilities = tc.defaultCaps
			got, err := capabilities(tc.caps, tc.privileged, &node)
			if !checkErr(t, err, tc.wantErr) {
				return
			}
			for name, set := range map[string][]string{"bounding": got.Bounding, "effective": got.Effective, "permitted": got.Permitted} {
				assertEqual(t, name, sorted(set), sorted(tc.want))
			}
			assertEqual(t, "ambient", got.Ambient, tc.wantAmbient)
			assertEqual(t, "inheritable", got.Inheritable, tc.wantAmbient)
		})
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	if out == nil {
		out = []string{}
	}
	slices.Sort(out)
	return out
}

func TestCapabilityNames(t *testing.T) {
	for _, tc := range []struct {
		desc string
		mask uint64
		want []string
	}{
		{desc: "none", mask: 0, want: nil},
		{desc: "chown and kill", mask: 1<<0 | 1<<5, want: []string{"CAP_CHOWN", "CAP_KILL"}},
		{desc: "unknown high bit ignored", mask: 1<<63 | 1<<1, want: []string{"CAP_DAC_OVERRIDE"}},
		{desc: "this machine's set lacks SYS_RESOURCE", mask: 0x1fffeffffff,
			want: func() []string {
				all := capabilityNames(0x1ffffffffff)
				return slices.DeleteFunc(all, func(s string) bool { return s == "CAP_SYS_RESOURCE" })
			}()},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			assertEqual(t, "names", capabilityNames(tc.mask), tc.want)
		})
	}
}

func TestCapName(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		in    string
		want  string
		known bool
	}{
		{desc: "bare", in: "chown", want: "CAP_CHOWN", known: true},
		{desc: "prefixed", in: "CAP_BPF", want: "CAP_BPF", known: true},
		{desc: "mixed case prefix", in: "Cap_Sys_Admin", want: "CAP_SYS_ADMIN", known: true},
		{desc: "unknown", in: "teleport", want: "CAP_TELEPORT", known: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, known := capName(tc.in)
			assertEqual(t, "name", got, tc.want)
			assertEqual(t, "known", known, tc.known)
		})
	}
}

// The default set is CRI-O's, in its order: none of the larger set
// Docker and containerd give.
func TestDefaultCapabilities(t *testing.T) {
	got := DefaultCapabilities()
	assertEqual(t, "defaults", got, []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID",
		"CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL",
	})
	for _, c := range got {
		t.Run(c, func(t *testing.T) {
			if _, ok := capName(c); !ok {
				t.Errorf("%s is not a known capability", c)
			}
		})
	}
}
