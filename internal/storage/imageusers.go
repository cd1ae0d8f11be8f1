package storage

import (
	"errors"
	"fmt"
	"strings"

	cstorage "go.podman.io/storage"
)

// maxUsersNamed bounds how many users of an image an error names.
const maxUsersNamed = 3

// usersOf says, for an error that is containers/storage's refusal to
// delete an image a container uses, which containers use it, by name: a
// root filesystem is named after its CRI container, an image volume after
// its container's ID (internal/sandbox). containers/storage names only
// one, by ID. Any other error gives "".
func (s *ImageStore) usersOf(id ImageID, err error) string {
	if !errors.Is(err, cstorage.ErrImageUsedByContainer) {
		return ""
	}
	cs, lerr := s.s.Containers()
	if lerr != nil {
		return ""
	}
	var names []string
	n := 0
	for _, c := range cs {
		if c.ImageID != string(id) {
			continue
		}
		if n++; len(names) < maxUsersNamed {
			name := c.ID
			if len(c.Names) > 0 {
				name = c.Names[0]
			}
			names = append(names, fmt.Sprintf("%q", name))
		}
	}
	if n == 0 {
		return ""
	}
	more := ""
	if n > len(names) {
		more = fmt.Sprintf(" and %d more", n-len(names))
	}
	return fmt.Sprintf(" (in use by storage container %s%s)", strings.Join(names, ", "), more)
}
