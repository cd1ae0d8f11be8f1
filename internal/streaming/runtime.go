package streaming

import (
	"context"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/sandbox"
)

// containers runs exec and attach sessions (sandbox.Exec).
type containers interface {
	// CheckExec and CheckAttach fail (NotFound, FailedPrecondition,
	// InvalidArgument) before a URL is handed out.
	CheckExec(id ids.ContainerID) error
	CheckAttach(id ids.ContainerID, stdin bool) error
	Exec(ctx context.Context, id ids.ContainerID, cmd []string, stdio sandbox.Stdio) (exitCode int, err error)
	Attach(ctx context.Context, id ids.ContainerID, stdio sandbox.Stdio) error
}

// pods port-forwards into pods (sandbox.Pods).
type pods interface {
	CheckPortForward(id ids.SandboxID) error
	PortForward(ctx context.Context, id ids.SandboxID, port int32, stream io.ReadWriteCloser) error
}

// runtime is what the library calls once a client has connected to a
// URL: it turns the library's arguments into noded's typed calls. The IDs
// were resolved when the URL was made.
type runtime struct {
	containers containers
	pods       pods
	log        *logrus.Entry
}

func (r *runtime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx = r.context(ctx, "Exec", "container", id)
	code, err := r.containers.Exec(ctx, ids.ContainerID(id), cmd, stdio(in, out, errw, tty, resize))
	if err != nil {
		log.FromContext(ctx).WithError(err).Warn("exec failed")
		return err
	}
	if code != 0 {
		// The library reports an ExitError's code to the client (kubectl
		// exits with it).
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (r *runtime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx = r.context(ctx, "Attach", "container", id)
	err := r.containers.Attach(ctx, ids.ContainerID(id), stdio(in, out, errw, tty, resize))
	if err != nil {
		log.FromContext(ctx).WithError(err).Warn("attach failed")
	}
	return err
}

func (r *runtime) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	ctx = r.context(ctx, "PortForward", "pod", id)
	err := r.pods.PortForward(ctx, ids.SandboxID(id), port, stream)
	if err != nil {
		log.FromContext(ctx).WithError(err).Debug("port-forward stream ended with an error")
	}
	return err
}

// context gives a stream's work a logger naming the session.
func (r *runtime) context(ctx context.Context, what, kind, id string) context.Context {
	return log.WithContext(ctx, r.log.WithFields(logrus.Fields{"stream": what, kind: ids.ContainerID(id).Short()}))
}

// stdio converts the library's streams; a nil stream stays nil (the
// client did not ask for it), never a typed nil inside an interface.
func stdio(in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) sandbox.Stdio {
	s := sandbox.Stdio{Tty: tty}
	if in != nil {
		s.In = in
	}
	if out != nil {
		s.Out = out
	}
	if errw != nil {
		s.Err = errw
	}
	if resize != nil {
		sizes := make(chan sandbox.TermSize, 1)
		go func() {
			defer close(sizes)
			for sz := range resize {
				// Only the newest size matters: drop one nobody read yet,
				// so this never blocks on a session that stopped reading.
				select {
				case <-sizes:
				default:
				}
				sizes <- sandbox.TermSize{Width: sz.Width, Height: sz.Height}
			}
		}()
		s.Resize = sizes
	}
	return s
}
