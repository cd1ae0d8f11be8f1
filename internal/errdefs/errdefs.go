// Package errdefs defines the error classes that domain packages return and
// that the CRI layer converts into gRPC status codes in exactly one place
// (see internal/cri/interceptor.go).
//
// Domain code wraps a class with fmt.Errorf("...: %w", errdefs.ErrNotFound)
// or uses the helpers below; callers test with errors.Is or the Is* helpers.
// It reuses github.com/containerd/errdefs so errors coming from libraries
// that already speak that vocabulary keep their class.
package errdefs

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// Error classes. They are the containerd/errdefs sentinels so that
// errors.Is works across both vocabularies.
var (
	ErrNotFound           = cerrdefs.ErrNotFound
	ErrAlreadyExists      = cerrdefs.ErrAlreadyExists
	ErrInvalidArgument    = cerrdefs.ErrInvalidArgument
	ErrFailedPrecondition = cerrdefs.ErrFailedPrecondition
	ErrUnavailable        = cerrdefs.ErrUnavailable
	ErrNotImplemented     = cerrdefs.ErrNotImplemented
	ErrPermissionDenied   = cerrdefs.ErrPermissionDenied
	ErrResourceExhausted  = cerrdefs.ErrResourceExhausted
	ErrUnauthenticated    = cerrdefs.ErrUnauthenticated
	ErrDeadlineExceeded   = context.DeadlineExceeded
	ErrAborted            = cerrdefs.ErrAborted
)

// NotFound returns an error of class ErrNotFound with a formatted message.
func NotFound(format string, args ...any) error { return wrap(ErrNotFound, format, args...) }

// AlreadyExists returns an error of class ErrAlreadyExists.
func AlreadyExists(format string, args ...any) error { return wrap(ErrAlreadyExists, format, args...) }

// InvalidArgument returns an error of class ErrInvalidArgument.
func InvalidArgument(format string, args ...any) error {
	return wrap(ErrInvalidArgument, format, args...)
}

// FailedPrecondition returns an error of class ErrFailedPrecondition.
func FailedPrecondition(format string, args ...any) error {
	return wrap(ErrFailedPrecondition, format, args...)
}

// Unavailable returns an error of class ErrUnavailable.
func Unavailable(format string, args ...any) error { return wrap(ErrUnavailable, format, args...) }

// ResourceExhausted wraps ErrResourceExhausted (a bounded table is full).
func ResourceExhausted(format string, args ...any) error {
	return wrap(ErrResourceExhausted, format, args...)
}

// NotImplemented returns an error of class ErrNotImplemented.
func NotImplemented(format string, args ...any) error {
	return wrap(ErrNotImplemented, format, args...)
}

// PermissionDenied returns an error of class ErrPermissionDenied.
func PermissionDenied(format string, args ...any) error {
	return wrap(ErrPermissionDenied, format, args...)
}

// Unauthenticated returns an error of class ErrUnauthenticated.
func Unauthenticated(format string, args ...any) error {
	return wrap(ErrUnauthenticated, format, args...)
}

// DeadlineExceeded returns an error of class ErrDeadlineExceeded.
func DeadlineExceeded(format string, args ...any) error {
	return wrap(ErrDeadlineExceeded, format, args...)
}

// IsNotFound reports whether err is of class ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is of class ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsInvalidArgument reports whether err is of class ErrInvalidArgument.
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// IsContextError reports whether err comes from a cancelled or expired context.
func IsContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// classError carries a class and a message; errors.Is matches the class
// and, when the format had a %w verb, the wrapped cause too. Error() is only
// the message so the class name is not repeated to the user.
type classError struct {
	class error
	cause error
	msg   string
}

func (e *classError) Error() string { return e.msg }

func (e *classError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.class}
	}
	return []error{e.class, e.cause}
}

func wrap(class error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &classError{class: class, cause: errors.Unwrap(err), msg: err.Error()}
}
