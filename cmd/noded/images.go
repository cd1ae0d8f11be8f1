package main

import (
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/config"
	"github.com/noded-dev/noded/internal/metrics"
)

// newImageService opens the image store and returns the image service and a
// function that releases it. Until the image service lands it returns nil and
// the ImageService RPCs answer Unimplemented.
func newImageService(_ *config.Config, _ *logrus.Entry, _ *metrics.Registry) (any, func(), error) {
	return nil, func() {}, nil
}
