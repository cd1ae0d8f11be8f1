package sandbox

import "io"

// Stdio are the client's streams of an exec or attach session. A nil
// stream was not asked for; with Tty, Err is nil (a terminal has one
// output) and Resize carries the client's window size changes.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
	Tty      bool
	Resize   <-chan TermSize
}

// TermSize is a terminal window size in characters.
type TermSize struct {
	Width, Height uint16
}
