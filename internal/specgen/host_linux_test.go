package specgen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseCapStatus(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		in       string
		eff, bnd uint64
		wantErr  bool
	}{
		{desc: "this machine", in: "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n",
			eff: 0x1fffeffffff, bnd: 0x1ffffffffff},
		{desc: "missing bounding", in: "CapEff:\t0000000000000001\n", wantErr: true},
		{desc: "garbage mask", in: "CapEff:\tzz\nCapBnd:\t0\n", wantErr: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			eff, bnd, err := parseCapStatus(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			assertEqual(t, "eff", eff, tc.eff)
			assertEqual(t, "bnd", bnd, tc.bnd)
		})
	}
}

func TestReadCapabilities(t *testing.T) {
	for _, tc := range []struct {
		desc string
		eff  string
		bnd  string
		want []string
	}{
		{desc: "effective and bounding intersect", eff: "0000000000000021", bnd: "0000000000000001", want: []string{"CAP_CHOWN"}},
		{desc: "nothing held", eff: "0000000000000000", bnd: "000001ffffffffff", want: nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "status")
			body := "CapEff:\t" + tc.eff + "\nCapBnd:\t" + tc.bnd + "\n"
			if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readCapabilities(f)
			if checkErr(t, err, nil) {
				assertEqual(t, "caps", got, tc.want)
			}
		})
	}
}

func TestPropagationFlags(t *testing.T) {
	for _, tc := range []struct {
		desc          string
		optional      string
		shared, slave bool
	}{
		{desc: "private", optional: ""},
		{desc: "shared", optional: "shared:1", shared: true},
		{desc: "slave", optional: "master:3", slave: true},
		{desc: "shared and slave", optional: "shared:5 master:3", shared: true, slave: true},
		{desc: "unbindable", optional: "unbindable"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			shared, slave := propagationFlags(tc.optional)
			assertEqual(t, "shared", shared, tc.shared)
			assertEqual(t, "slave", slave, tc.slave)
		})
	}
}

// The OS implementation, on this machine's real files.
func TestOSFS(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		desc string
		run  func(t *testing.T)
	}{
		{desc: "a device node", run: func(t *testing.T) {
			got, err := OSFS{}.Devices("/dev/null")
			if !checkErr(t, err, nil) {
				return
			}
			assertEqual(t, "count", len(got), 1)
			assertEqual(t, "node", []any{got[0].Path, got[0].Type, got[0].Major, got[0].Minor}, []any{"", "c", int64(1), int64(3)})
		}},
		{desc: "a directory of devices", run: func(t *testing.T) {
			got, err := OSFS{}.Devices("/dev")
			if !checkErr(t, err, nil) {
				return
			}
			if !slices.ContainsFunc(got, func(d specs.LinuxDevice) bool { return d.Path == "null" }) {
				t.Errorf("/dev listing lacks null: %v", got)
			}
			if slices.ContainsFunc(got, func(d specs.LinuxDevice) bool { return strings.HasPrefix(d.Path, "pts/") }) {
				t.Error("/dev/pts must be skipped")
			}
		}},
		{desc: "a regular file is no device", run: func(t *testing.T) {
			f := filepath.Join(tmp, "file")
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := (OSFS{}).Devices(f); err == nil {
				t.Error("want an error")
			}
		}},
		{desc: "a missing bind source is created as a directory", run: func(t *testing.T) {
			p := filepath.Join(tmp, "a", "b")
			got, err := OSFS{}.BindSource(p)
			if !checkErr(t, err, nil) {
				return
			}
			assertEqual(t, "path", got, p)
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				t.Errorf("want a directory at %s: %v", p, err)
			}
		}},
		{desc: "a symlinked bind source is resolved", run: func(t *testing.T) {
			target := filepath.Join(tmp, "target")
			link := filepath.Join(tmp, "link")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			got, err := OSFS{}.BindSource(link)
			if checkErr(t, err, nil) {
				assertEqual(t, "path", got, target)
			}
		}},
		{desc: "a relative symlink is resolved from its directory", run: func(t *testing.T) {
			if err := os.MkdirAll(filepath.Join(tmp, "usr", "lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("usr/lib", filepath.Join(tmp, "lib")); err != nil {
				t.Fatal(err)
			}
			got, err := OSFS{}.BindSource(filepath.Join(tmp, "lib"))
			if checkErr(t, err, nil) {
				assertEqual(t, "path", got, filepath.Join(tmp, "usr", "lib"))
			}
		}},
		{desc: "a symlink to nothing is refused, its target not made", run: func(t *testing.T) {
			target := filepath.Join(tmp, "nothing")
			link := filepath.Join(tmp, "dangling")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{link, filepath.Join(link, "sub")} {
				if _, err := (OSFS{}).BindSource(p); err == nil || !strings.Contains(err.Error(), "does not exist") {
					t.Errorf("%s: want a clear refusal, got %v", p, err)
				}
			}
			if _, err := os.Lstat(target); err == nil {
				t.Errorf("the link's target %s was made", target)
			}
		}},
		{desc: "propagation of / is readable", run: func(t *testing.T) {
			if _, _, err := (OSFS{}).MountPropagation(tmp); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.desc, tc.run)
	}
}

func TestDetectNode(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		check func(*testing.T, Node)
	}{
		{desc: "facts of this process", check: func(t *testing.T, n Node) {
			if n.HostCapabilities == nil {
				t.Error("capabilities not detected")
			}
			if n.Hostname == "" {
				t.Error("no host name")
			}
			if n.OOMScoreAdjMin < -1000 || n.OOMScoreAdjMin > 1000 {
				t.Errorf("oom_score_adj %d", n.OOMScoreAdjMin)
			}
		}},
		{desc: "usable for a container", check: func(t *testing.T, n Node) {
			c := testContainer(t)
			n.FS = newFakeFS()
			c.Node = n
			if _, err := c.Generate(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			n, err := DetectNode()
			if checkErr(t, err, nil) {
				tc.check(t, n)
			}
		})
	}
}
