package specgen

import (
	"os"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

func TestResolveUser(t *testing.T) {
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	for _, tc := range []struct {
		desc           string
		sc             *runtimeapi.LinuxContainerSecurityContext
		imageUser      string
		passwd, group  string
		want           User
		wantErr        error
		noRootfsPasswd bool
	}{
		{desc: "root by default", want: User{UID: 0, GID: 0, AdditionalGIDs: []uint32{0}}},
		{desc: "image user name with member groups",
			imageUser: "app", want: User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{29, 44, 1000}}},
		{desc: "image uid known to passwd",
			imageUser: "33", want: User{UID: 33, GID: 33, AdditionalGIDs: []uint32{33, 44}}},
		{desc: "image uid unknown to passwd gets gid 0",
			imageUser: "4242", want: User{UID: 4242, GID: 0, AdditionalGIDs: []uint32{0}}},
		{desc: "image name:group",
			imageUser: "app:staff", want: User{UID: 1000, GID: 50, AdditionalGIDs: []uint32{29, 44, 50}}},
		{desc: "image uid:gid",
			imageUser: "4242:4343", want: User{UID: 4242, GID: 4343, AdditionalGIDs: []uint32{4343}}},
		{desc: "no passwd file: numeric user still works",
			imageUser: "65535:65535", passwd: "-", group: "-",
			want: User{UID: 65535, GID: 65535, AdditionalGIDs: []uint32{65535}}},
		{desc: "run_as_user overrides image",
			sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000)}, imageUser: "web",
			want: User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{29, 44, 1000}}},
		{desc: "run_as_username overrides run_as_user",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "web", RunAsUser: i64(1000)},
			want: User{UID: 33, GID: 33, AdditionalGIDs: []uint32{33, 44}}},
		{desc: "run_as_group with run_as_user keeps image groups (Merge)",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(1000), RunAsGroup: i64(3000), SupplementalGroups: []int64{4000}},
			want: User{UID: 1000, GID: 3000, AdditionalGIDs: []uint32{29, 44, 3000, 4000}}},
		{desc: "run_as_group replaces the group of a named user",
			sc:   &runtimeapi.LinuxContainerSecurityContext{RunAsUsername: "app", RunAsGroup: i64(3000)},
			want: User{UID: 1000, GID: 3000, AdditionalGIDs: []uint32{29, 44, 3000}}},
		{desc: "run_as_group without a user is rejected",
			sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64(3000)}, imageUser: "app:staff",
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "Strict leaves out /etc/group",
			sc: &runtimeapi.LinuxContainerSecurityContext{
				RunAsUser: i64(1000), SupplementalGroups: []int64{4000, 4000},
				SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy_Strict,
			},
			want: User{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{1000, 4000}}},
		{desc: "unknown user name", imageUser: "nobody-here", wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown group name", imageUser: "app:nogroup", wantErr: errdefs.ErrInvalidArgument},
		{desc: "user name without passwd file", imageUser: "app", passwd: "-", wantErr: errdefs.ErrInvalidArgument},
		{desc: "negative run_as_user",
			sc: &runtimeapi.LinuxContainerSecurityContext{RunAsUser: i64(-1)}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "negative run_as_group",
			sc: &runtimeapi.LinuxContainerSecurityContext{RunAsGroup: i64(-5)}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "negative supplemental group",
			sc: &runtimeapi.LinuxContainerSecurityContext{SupplementalGroups: []int64{-1}}, wantErr: errdefs.ErrInvalidArgument},
		{desc: "uid out of range in image", imageUser: "4294967296", wantErr: errdefs.ErrInvalidArgument},
		{desc: "image user with empty name", imageUser: ":50", wantErr: errdefs.ErrInvalidArgument},
		{desc: "unknown policy",
			sc:      &runtimeapi.LinuxContainerSecurityContext{SupplementalGroupsPolicy: runtimeapi.SupplementalGroupsPolicy(7)},
			wantErr: errdefs.ErrInvalidArgument},
		{desc: "group file unreadable as a directory", imageUser: "app", group: "-dir", wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			passwd, group := tc.passwd, tc.group
			if passwd == "" {
				passwd = testPasswd
			}
			if group == "" {
				group = testGroup
			}
			if passwd == "-" {
				passwd = ""
			}
			if group == "-" {
				group = ""
			}
			dirGroup := group == "-dir"
			if dirGroup {
				group = ""
			}
			root := makeRootfs(t, passwd, group)
			if dirGroup {
				if err := os.Mkdir(filepath.Join(root, "etc", "group"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			sc := tc.sc
			if sc == nil {
				sc = &runtimeapi.LinuxContainerSecurityContext{}
			}
			req, err := newUserRequest(sc, sc.GetRunAsUsername(), tc.imageUser)
			var got User
			if err == nil {
				got, err = resolveUser(root, req)
			}
			if checkErr(t, err, tc.wantErr) {
				assertEqual(t, "user", got, tc.want)
			}
		})
	}
}

// An absolute symlink in the image must resolve inside the rootfs, never
// to the host's file.
func TestResolveUserSymlinkStaysInRootfs(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		target string
		want   User
	}{
		{desc: "absolute link to the image's own file", target: "/etc/passwd.real", want: User{UID: 7, GID: 7, AdditionalGIDs: []uint32{7}}},
		{desc: "link escaping the rootfs is refused", target: "../../../../../../etc/passwd"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := makeRootfs(t, "", "")
			if err := os.WriteFile(filepath.Join(root, "etc", "passwd.real"), []byte("svc:x:7:7::/:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target, filepath.Join(root, "etc", "passwd")); err != nil {
				t.Fatal(err)
			}
			req := userRequest{user: "svc"}
			got, err := resolveUser(root, req)
			if tc.want.UID == 0 {
				checkErr(t, err, errdefs.ErrInvalidArgument)
				return
			}
			if checkErr(t, err, nil) {
				assertEqual(t, "user", got, tc.want)
			}
		})
	}
}

func TestUserCRI(t *testing.T) {
	for _, tc := range []struct {
		desc string
		in   User
		want *runtimeapi.LinuxContainerUser
	}{
		{desc: "with groups", in: User{UID: 1, GID: 2, AdditionalGIDs: []uint32{2, 3}},
			want: &runtimeapi.LinuxContainerUser{Uid: 1, Gid: 2, SupplementalGroups: []int64{2, 3}}},
		{desc: "root", in: User{},
			want: &runtimeapi.LinuxContainerUser{SupplementalGroups: []int64{}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := tc.in.CRI().GetLinux()
			assertEqual(t, "uid", got.GetUid(), tc.want.GetUid())
			assertEqual(t, "gid", got.GetGid(), tc.want.GetGid())
			assertEqual(t, "groups", got.GetSupplementalGroups(), tc.want.GetSupplementalGroups())
		})
	}
}
