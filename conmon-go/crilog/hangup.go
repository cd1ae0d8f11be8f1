package crilog

import (
	"errors"
	"os"
	"syscall"
)

// isHangup reports read errors that mean the writer side went away: a pty
// master returns EIO once the slave is closed, and a pipe read end closed
// by us to stop a copy returns os.ErrClosed.
func isHangup(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed)
}
