package cri

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestLoggableHidesSecretsAndBulk(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1<<20)
	tests := []struct {
		name   string
		msg    any
		hidden []string // must not appear in the log line
		shown  []string // must appear
	}{
		{"registry credentials", &runtimeapi.PullImageRequest{
			Image: &runtimeapi.ImageSpec{Image: "reg.example/app:1"},
			Auth:  &runtimeapi.AuthConfig{ServerAddress: "reg.example", Username: "bob", Password: "hunter2", IdentityToken: "tok-id", RegistryToken: "tok-reg", Auth: "Ym9iOmh1bnRlcjI="},
		}, []string{"hunter2", "tok-id", "tok-reg", "Ym9iOmh1bnRlcjI=", "bob"}, []string{"reg.example/app:1"}},
		{"environment values", &runtimeapi.CreateContainerRequest{Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Envs:     []*runtimeapi.KeyValue{{Key: "DB_PASSWORD", Value: []byte("s3cret")}},
		}}, []string{"s3cret"}, []string{"DB_PASSWORD", "app"}},
		{"exec output", &runtimeapi.ExecSyncResponse{Stdout: big, Stderr: []byte("oops"), ExitCode: 3},
			[]string{"xxxxxxxx", "oops"}, []string{"exit_code:3", "1048576 bytes", "4 bytes"}},
		{"anything else as it is", &runtimeapi.ContainerStatusRequest{ContainerId: "abc123"}, nil, []string{"abc123"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(tc.msg)
			var out bytes.Buffer
			lg := logrus.New()
			lg.SetOutput(&out)
			lg.SetLevel(logrus.DebugLevel)
			lg.WithField("request", loggable(tc.msg)).Debug("request")
			line := out.String()
			for _, h := range tc.hidden {
				if strings.Contains(line, h) {
					t.Errorf("log line shows %q: %.300s", h, line)
				}
			}
			for _, s := range tc.shown {
				if !strings.Contains(line, s) {
					t.Errorf("log line lacks %q: %.300s", s, line)
				}
			}
			if fmt.Sprint(tc.msg) != before {
				t.Error("loggable changed the message itself")
			}
		})
	}
}
