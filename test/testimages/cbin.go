package testimages

import (
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The helpers that are not busybox applets (pause, the no-new-privileges
// probe, the nginx stand-in) are tiny C programs compiled at catalog build
// time: a static glibc binary needs nothing from the image, and building
// from source keeps binaries out of the repository.
//
//go:embed csrc/*.c
var csrc embed.FS

// compileStatic compiles csrc/<name>.c into a static, stripped executable
// and returns its contents. Stripping also drops the temporary source path,
// so the same compiler gives byte-identical output on every run. $CC
// overrides the compiler (default gcc).
func compileStatic(name string) ([]byte, error) {
	src, err := csrc.ReadFile("csrc/" + name + ".c")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "noded-testimages-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	srcPath := filepath.Join(dir, name+".c")
	if err := os.WriteFile(srcPath, src, 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, name)
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	cmd := exec.Command(cc, "-static", "-Os", "-s", "-Wall", "-o", out, srcPath)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compile %s.c with %s: %w\n%s", name, cc, err, strings.TrimSpace(string(msg)))
	}
	return os.ReadFile(out)
}
