package config

import (
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary documents to the file loader (the seeds in
// testdata/fuzz/FuzzLoad run with every go test). Whatever loads must
// validate, and print (TOML) to a file that loads back to the same
// configuration: operators start from `noded config > noded.toml`, so a
// loaded value that does not survive printing is a configuration that
// changes on its own. Run longer with
//
//	go test -tags "$(BUILDTAGS)" -run '^$' -fuzz FuzzLoad -fuzztime 60s ./internal/config/
func FuzzLoad(f *testing.F) {
	f.Add("log-level = \"debug\"\nroot = \"/srv/noded\"\n")
	f.Add("pull-progress-timeout = \"-1s\"\n")
	f.Fuzz(func(t *testing.T, doc string) {
		dir := t.TempDir()
		path := write(t, filepath.Join(dir, "noded.toml"), doc)
		cfg, err := Load(Sources{File: path, FileExplicit: true})
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load accepted a configuration that does not validate: %v", err)
		}
		out, err := cfg.TOML()
		if err != nil {
			t.Fatalf("a loaded configuration does not print: %v", err)
		}
		back, err := Load(Sources{File: write(t, filepath.Join(dir, "printed.toml"), string(out)), FileExplicit: true})
		if err != nil {
			t.Fatalf("the printed configuration does not load: %v\n%s", err, out)
		}
		if again, _ := back.TOML(); string(again) != string(out) {
			t.Fatalf("printing and loading changed the configuration:\n%s\n---\n%s", out, again)
		}
	})
}
