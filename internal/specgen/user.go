package specgen

import (
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/errdefs"
)

// userRequest is who a process should run as, before resolution against the
// image's /etc/passwd and /etc/group.
type userRequest struct {
	// user is a name or a numeric uid; group a name, a numeric gid or empty
	// (the user's primary group).
	user  string
	group string
	// supplemental are the request's extra groups; strict leaves out the
	// image's groups of the user (SupplementalGroupsPolicy Strict).
	supplemental []int64
	strict       bool
}

// securityUser is the part of the container and sandbox security contexts
// that names a user.
type securityUser interface {
	GetRunAsUser() *runtimeapi.Int64Value
	GetRunAsGroup() *runtimeapi.Int64Value
	GetSupplementalGroups() []int64
	GetSupplementalGroupsPolicy() runtimeapi.SupplementalGroupsPolicy
}

// newUserRequest picks the user: run_as_username, else run_as_user, else the
// image's USER, else root. run_as_group replaces the group whichever way the
// user was chosen, since the kubelet itself fills run_as_user from the image.
func newUserRequest(sc securityUser, username, imageUser string) (userRequest, error) {
	var r userRequest
	// As containerd: a group alone is ambiguous (whose group?), and the
	// kubelet always names the user when it sets the group.
	if sc.GetRunAsGroup() != nil && username == "" && sc.GetRunAsUser() == nil {
		return r, errdefs.InvalidArgument("run_as_group is set without run_as_user or run_as_username")
	}
	switch {
	case username != "":
		r.user = username
	case sc.GetRunAsUser() != nil:
		uid := sc.GetRunAsUser().GetValue()
		if uid < 0 || uid > math.MaxInt32 {
			return r, errdefs.InvalidArgument("run_as_user %d out of range", uid)
		}
		r.user = strconv.FormatInt(uid, 10)
	case imageUser != "":
		r.user, r.group, _ = strings.Cut(imageUser, ":")
		if r.user == "" {
			return r, errdefs.InvalidArgument("image USER %q has no user", imageUser)
		}
	default:
		r.user = "0"
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if g.GetValue() < 0 || g.GetValue() > math.MaxInt32 {
			return r, errdefs.InvalidArgument("run_as_group %d out of range", g.GetValue())
		}
		r.group = strconv.FormatInt(g.GetValue(), 10)
	}
	for _, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > math.MaxInt32 {
			return r, errdefs.InvalidArgument("supplemental group %d out of range", g)
		}
	}
	r.supplemental = sc.GetSupplementalGroups()
	switch p := sc.GetSupplementalGroupsPolicy(); p {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
	case runtimeapi.SupplementalGroupsPolicy_Strict:
		r.strict = true
	default:
		return r, errdefs.InvalidArgument("unknown supplemental_groups_policy %d", p)
	}
	return r, nil
}

// resolveUser resolves r against the passwd and group files of rootfs. A
// numeric uid needs no passwd entry (its group is then 0, as in Docker); a
// name must have one. Additional groups always hold the primary group, as
// containerd does, so the kernel's group list matches `id -G`.
func resolveUser(rootfs string, r userRequest) (User, error) {
	db, err := readUserDB(rootfs)
	if err != nil {
		return User{}, err
	}
	u, name, err := db.lookupUser(r.user)
	if err != nil {
		return User{}, err
	}
	if r.group != "" {
		if u.GID, err = db.lookupGroup(r.group); err != nil {
			return User{}, err
		}
	}
	gids := []uint32{u.GID}
	if !r.strict && name != "" {
		gids = append(gids, db.memberOf(name)...)
	}
	for _, g := range r.supplemental {
		gids = append(gids, uint32(g))
	}
	slices.Sort(gids)
	u.AdditionalGIDs = slices.Compact(gids)
	return u, nil
}

// userDB is an image's /etc/passwd and /etc/group; a missing file is empty.
type userDB struct {
	users  []user.User
	groups []user.Group
}

// readUserDB reads the image's files. Symlinks in the image resolve as if
// rootfs were "/" (an absolute /etc/passwd -> /usr/lib/passwd stays in the
// image); os.Root then guarantees the open cannot leave the rootfs even if
// the tree changes meanwhile.
func readUserDB(rootfs string) (*userDB, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, errdefs.InvalidArgument("container rootfs %q: %v", rootfs, err)
	}
	defer root.Close()
	db := &userDB{}
	if err := parseRootFile(root, "etc/passwd", func(r io.Reader) (err error) {
		db.users, err = user.ParsePasswd(r)
		return err
	}); err != nil {
		return nil, err
	}
	if err := parseRootFile(root, "etc/group", func(r io.Reader) (err error) {
		db.groups, err = user.ParseGroup(r)
		return err
	}); err != nil {
		return nil, err
	}
	return db, nil
}

func parseRootFile(root *os.Root, name string, parse func(io.Reader) error) error {
	f, err := openInRoot(root, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errdefs.InvalidArgument("reading /%s of the container image: %v", name, err)
	}
	defer f.Close()
	if err := parse(f); err != nil {
		return errdefs.InvalidArgument("parsing /%s of the container image: %v", name, err)
	}
	return nil
}

// openInRoot opens name (relative to root) after resolving its symlinks
// with root as "/".
func openInRoot(root *os.Root, name string) (*os.File, error) {
	resolved, err := securejoin.SecureJoin(root.Name(), name)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(root.Name(), resolved)
	if err != nil {
		return nil, err
	}
	return root.Open(rel)
}

// lookupUser returns the uid and primary gid of spec, and the user's name
// when /etc/passwd knows it.
func (db *userDB) lookupUser(spec string) (User, string, error) {
	if uid, err := strconv.Atoi(spec); err == nil {
		if uid < 0 || uid > math.MaxInt32 {
			return User{}, "", errdefs.InvalidArgument("uid %d out of range", uid)
		}
		for _, u := range db.users {
			if u.Uid == uid {
				return User{UID: uint32(uid), GID: uint32(u.Gid)}, u.Name, nil
			}
		}
		return User{UID: uint32(uid)}, "", nil
	}
	for _, u := range db.users {
		if u.Name == spec {
			return User{UID: uint32(u.Uid), GID: uint32(u.Gid)}, u.Name, nil
		}
	}
	return User{}, "", errdefs.InvalidArgument("user %q not found in the image's /etc/passwd", spec)
}

func (db *userDB) lookupGroup(spec string) (uint32, error) {
	if gid, err := strconv.Atoi(spec); err == nil {
		if gid < 0 || gid > math.MaxInt32 {
			return 0, errdefs.InvalidArgument("gid %d out of range", gid)
		}
		return uint32(gid), nil
	}
	for _, g := range db.groups {
		if g.Name == spec {
			return uint32(g.Gid), nil
		}
	}
	return 0, errdefs.InvalidArgument("group %q not found in the image's /etc/group", spec)
}

// memberOf returns the groups that list name as a member.
func (db *userDB) memberOf(name string) []uint32 {
	var out []uint32
	for _, g := range db.groups {
		if slices.Contains(g.List, name) {
			out = append(out, uint32(g.Gid))
		}
	}
	return out
}
