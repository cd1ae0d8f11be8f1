package imagesvc

import (
	"archive/tar"
	"io"
	"path"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/noded-dev/noded/internal/errdefs"
)

// whiteoutPrefix marks a deleted path in a layer (".wh.<name>").
const whiteoutPrefix = ".wh."

// checkEntry refuses the layer entries that containers/storage would
// unpack to something noded does not want in its store:
//
//   - device nodes: as root, containers/storage creates them as they are
//     (a character device 1:1 is /dev/mem), and the container's rootfs
//     is not mounted nodev, so such a node would reach the host device
//     wherever the device cgroup allows it (a privileged container, a
//     host tool walking the store). A 0:0 character device is overlay's
//     own whiteout, which some tools write as is: allowed.
//   - whiteouts of "", "." or "..": they name the directory itself or its
//     parent, which containers/storage then fails on ("file exists")
//     without saying which entry was wrong.
func checkEntry(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Typeflag == tar.TypeChar && hdr.Devmajor == 0 && hdr.Devminor == 0 {
			return nil
		}
		kind := "character"
		if hdr.Typeflag == tar.TypeBlock {
			kind = "block"
		}
		return errdefs.FailedPrecondition("entry %q is a %s device (%d:%d); noded does not unpack device nodes from images",
			hdr.Name, kind, hdr.Devmajor, hdr.Devminor)
	}
	base := path.Base(path.Clean("/" + hdr.Name))
	if target, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		if target == "" || target == "." || target == ".." {
			return errdefs.FailedPrecondition("entry %q is a whiteout of %q, not of a name in its directory", hdr.Name, target)
		}
	}
	return nil
}

// entryCheck reads a copy of a layer's uncompressed stream (written to it
// by the asyncVerifier's goroutine, off the unpack's path) as a tar and
// records the first entry checkEntry refuses. It parses the same bytes
// with the same parser as containers/storage, so it sees the entries
// storage unpacks; the diffReader turns its verdict into a read error,
// at the latest at the end of the stream, so such a layer is never
// completed.
type entryCheck struct {
	layer  digest.Digest
	pw     *io.PipeWriter
	done   chan struct{}
	closed bool
	err    atomic.Pointer[error]
}

func newEntryCheck(layer digest.Digest) *entryCheck {
	pr, pw := io.Pipe()
	c := &entryCheck{layer: layer, pw: pw, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		tr := tar.NewReader(pr)
		for {
			hdr, err := tr.Next()
			if err != nil {
				// The end of the archive, or a stream that is no tar:
				// storage refuses that itself.
				break
			}
			if err := checkEntry(hdr); err != nil {
				err = errdefs.FailedPrecondition("layer %s: %w", c.layer, err)
				c.err.Store(&err)
				break
			}
		}
		// Keep reading, so that the writer never blocks.
		_, _ = io.Copy(io.Discard, pr)
	}()
	return c
}

// Write passes p to the parser; it blocks until the parser has read it.
func (c *entryCheck) Write(p []byte) (int, error) { return c.pw.Write(p) }

// refused returns the entry error found so far, nil if none.
func (c *entryCheck) refused() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// close ends the parser once it has read everything written and returns
// its verdict. It may be called more than once.
func (c *entryCheck) close() error {
	if !c.closed {
		c.closed = true
		_ = c.pw.Close()
	}
	<-c.done
	return c.refused()
}
