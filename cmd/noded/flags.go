package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/noded-dev/noded/internal/config"
)

// cliFlags holds what was given on the command line. Each flag is also a
// configuration key of the same name; only flags actually given override
// the configuration files.
type cliFlags struct {
	fs      *flag.FlagSet
	file    string
	dir     string
	version bool
	values  map[string]*string
}

// notFlags are configuration keys that are too structured for a flag.
var notFlags = map[string]bool{"storage-options": true, "conmon-path": true, "pause-path": true}

// listFlags are list keys given as one comma-separated flag.
var listFlags = map[string]bool{"cni-plugin-dirs": true, "cdi-spec-dirs": true, "pinned-images": true}

func newFlags(name string, out io.Writer) *cliFlags {
	f := &cliFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError), values: map[string]*string{}}
	f.fs.SetOutput(out)
	f.fs.StringVar(&f.file, "config", config.DefaultConfigFile, "configuration file (TOML)")
	f.fs.StringVar(&f.dir, "config-dir", config.DefaultConfigDir, "drop-in directory of *.toml files applied after --config, in lexical order")
	f.fs.BoolVar(&f.version, "version", false, "print the version and exit")
	for _, k := range config.Keys {
		if !notFlags[k.Name] {
			f.values[k.Name] = f.fs.String(k.Name, "", k.Help)
		}
	}
	f.fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s [flags]\n       %s config [flags]            print the effective configuration as TOML\n"+
			"       %s default-network [flags]   write the default CNI network unless cni-config-dir holds one\n"+
			"       %s check [--repair] [flags]  check the image store (noded stopped); --repair removes what is damaged\n\nFlags:\n", name, name, name, name)
		f.fs.PrintDefaults()
	}
	return f
}

// load reads the configuration files, applies the flags that were given and
// validates the result.
func (f *cliFlags) load() (*config.Config, error) {
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	src := config.Sources{File: f.file, FileExplicit: given["config"], Dir: f.dir, DirExplicit: given["config-dir"]}
	cfg, err := config.Load(src)
	if err != nil {
		return nil, err
	}
	// Overrides are applied as a TOML fragment so that flags and files share
	// one parser and one set of error messages.
	var overrides strings.Builder
	for _, k := range config.Keys {
		if !given[k.Name] {
			continue
		}
		v := *f.values[k.Name]
		if listFlags[k.Name] {
			fmt.Fprintf(&overrides, "%s = %s\n", k.Name, tomlList(strings.Split(v, ",")))
			continue
		}
		fmt.Fprintf(&overrides, "%s = %q\n", k.Name, v)
	}
	if overrides.Len() > 0 {
		if err := cfg.Merge("command line", overrides.String()); err != nil {
			return nil, err
		}
	}
	cfg.ApplyEnvironment()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func tomlList(items []string) string {
	quoted := make([]string, 0, len(items))
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			quoted = append(quoted, fmt.Sprintf("%q", it))
		}
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
