package imagesvc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"

	"github.com/noded-dev/noded/internal/errdefs"
)

// errNoProgress is the cause of a pull cancelled by the progress timeout.
var errNoProgress = errors.New("no progress")

// statusInMessage finds the status of 4xx answers that containers/image
// reports only as text ("StatusCode: 403, ...").
var statusInMessage = regexp.MustCompile(`StatusCode: ([1-5][0-9][0-9])\b`)

// sizeLimitInMessage finds containers/image's refusal of a response
// larger than its limit for the kind (iolimits.ReadAtMost: a manifest 4
// MiB, a token 1 MiB), which it reports only as text.
var sizeLimitInMessage = regexp.MustCompile(`exceeded maximum allowed size of ([0-9]+) bytes`)

// httpStatus extracts the HTTP status a registry answered with, 0 if the
// error is not an HTTP answer.
func httpStatus(err error) int {
	var unexpected docker.UnexpectedHTTPStatusError
	if errors.As(err, &unexpected) {
		return unexpected.StatusCode
	}
	var unauthorized docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauthorized) {
		return http.StatusUnauthorized
	}
	if errors.Is(err, docker.ErrTooManyRequests) {
		return http.StatusTooManyRequests
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		return ec.Code.Descriptor().HTTPStatusCode
	}
	var code errcode.ErrorCode
	if errors.As(err, &code) {
		return code.Descriptor().HTTPStatusCode
	}
	var ecs errcode.Errors
	if errors.As(err, &ecs) && len(ecs) > 0 {
		return httpStatus(ecs[0])
	}
	if m := statusInMessage.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// registryError gives an error from talking to a registry its class and a
// message that names the registry and the reason, which the kubelet shows
// in the pod's events.
func registryError(err error, registry, what string) error {
	if err == nil {
		return nil
	}
	if isClassified(err) {
		return err
	}
	if errors.Is(err, errNoProgress) {
		return errdefs.DeadlineExceeded("%s: no progress from registry %s within the pull progress timeout: %w", what, registry, err)
	}
	if errdefs.IsContextError(err) {
		return err
	}
	if m := sizeLimitInMessage.FindStringSubmatch(err.Error()); m != nil {
		return errdefs.InvalidArgument("%s: registry %s answered with more than %s bytes, far more than any real manifest; refused: %w", what, registry, m[1], err)
	}
	switch code := httpStatus(err); {
	case code == http.StatusUnauthorized:
		return errdefs.Unauthenticated("%s: registry %s answered 401 Unauthorized (missing or wrong credentials): %w", what, registry, err)
	case code == http.StatusForbidden:
		return errdefs.PermissionDenied("%s: registry %s answered 403 Forbidden (the credentials do not grant pull access): %w", what, registry, err)
	case code == http.StatusNotFound:
		return errdefs.NotFound("%s: registry %s answered 404 Not Found: %w", what, registry, err)
	case code == http.StatusTooManyRequests:
		return errdefs.Unavailable("%s: registry %s answered 429 Too Many Requests: %w", what, registry, err)
	case code >= 500:
		return errdefs.Unavailable("%s: registry %s answered %d %s: %w", what, registry, code, http.StatusText(code), err)
	case code >= 400:
		return errdefs.FailedPrecondition("%s: registry %s answered %d %s: %w", what, registry, code, http.StatusText(code), err)
	case isNetworkError(err):
		return errdefs.Unavailable("%s: cannot reach registry %s: %w", what, registry, err)
	}
	return fmt.Errorf("%s: registry %s: %w", what, registry, err)
}

// isClassified reports whether err already carries an errdefs class.
func isClassified(err error) bool {
	for _, class := range []error{
		errdefs.ErrNotFound, errdefs.ErrInvalidArgument, errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable,
		errdefs.ErrPermissionDenied, errdefs.ErrUnauthenticated, errdefs.ErrAlreadyExists, errdefs.ErrAborted,
		errdefs.ErrResourceExhausted, errdefs.ErrNotImplemented,
	} {
		if errors.Is(err, class) {
			return true
		}
	}
	return false
}

func isNetworkError(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(err, &netErr) || errors.As(err, &opErr) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// retryable reports whether another attempt at the same request may
// succeed: server errors, throttling and broken connections. Content that
// fails verification is not retried.
func retryable(err error) bool {
	if err == nil || errdefs.IsContextError(err) || errors.Is(err, errNoProgress) || errors.Is(err, errDigestMismatch) {
		return false
	}
	code := httpStatus(err)
	return code >= 500 || code == http.StatusTooManyRequests || (code == 0 && isNetworkError(err))
}
