package sandbox

import "github.com/noded-dev/noded/internal/oci"

// Stdio are the client's streams of an exec or attach session, as the
// monitor client takes them (a nil stream was not asked for; with Tty,
// Err is nil and Resize carries the client's window size changes). One
// type from the streaming server down to the monitor: no copy of the
// streams or the sizes on the way.
type Stdio = oci.Stdio

// TermSize is a terminal window size in characters.
type TermSize = oci.TermSize
