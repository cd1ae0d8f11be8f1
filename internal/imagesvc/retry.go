package imagesvc

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
)

// retry runs op, and again after each pause in delays while it fails with
// an error that retryable accepts (a server error, throttling, a broken
// connection). It returns op's last error; interrupted reports that ctx
// ended while another attempt was due, which callers that answer with
// ctx's cause rather than op's error (a download) need to know. what
// names the request in the debug line logged before each pause.
func retry(ctx context.Context, delays []time.Duration, log *logrus.Entry, what string, op func() error) (interrupted bool, err error) {
	for attempt := 0; ; attempt++ {
		err = op()
		if err == nil || attempt >= len(delays) || !retryable(err) {
			return false, err
		}
		if ctx.Err() != nil {
			return true, err
		}
		log.WithError(err).Debugf("%s failed; retrying in %s", what, delays[attempt])
		t := time.NewTimer(delays[attempt])
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return true, err
		}
	}
}
