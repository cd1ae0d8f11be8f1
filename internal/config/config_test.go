package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultsValidate(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("built-in defaults do not validate: %v", err)
	}
	if cfg.Listen != "/run/noded/noded.sock" || cfg.StorageDriver != "overlay" || cfg.CNIConfigDir != "/etc/cni/net.d" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		desc         string
		file         string // content of the main file; "-" means no file
		dropIns      map[string]string
		explicitFile bool
		wantErr      string // substring; empty means success
		check        func(t *testing.T, c *Config)
	}{
		{
			desc: "no file at all gives the defaults",
			file: "-",
			check: func(t *testing.T, c *Config) {
				if c.Root != DefaultRoot || c.LogLevel != "info" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			desc:         "an explicitly named file must exist",
			file:         "-",
			explicitFile: true,
			wantErr:      "no such file",
		},
		{
			desc: "file overrides defaults and keeps the rest",
			file: "log-level = \"debug\"\nroot = \"/srv/noded\"\npull-progress-timeout = \"90s\"\ncni-plugin-dirs = [\"/x/bin\"]\n",
			check: func(t *testing.T, c *Config) {
				if c.LogLevel != "debug" || c.Root != "/srv/noded" || c.RunRoot != DefaultRunRoot {
					t.Errorf("got %+v", c)
				}
				if c.PullProgressTimeout.Duration != 90*time.Second {
					t.Errorf("pull-progress-timeout = %v", c.PullProgressTimeout)
				}
				if len(c.CNIPluginDirs) != 1 || c.CNIPluginDirs[0] != "/x/bin" {
					t.Errorf("cni-plugin-dirs = %v", c.CNIPluginDirs)
				}
			},
		},
		{
			desc:    "drop-ins apply after the file in lexical order",
			file:    "log-level = \"debug\"\n",
			dropIns: map[string]string{"20-b.toml": "log-level = \"warn\"\n", "10-a.toml": "log-level = \"error\"\nlog-format = \"json\"\n", "README": "not toml"},
			check: func(t *testing.T, c *Config) {
				if c.LogLevel != "warn" || c.LogFormat != "json" {
					t.Errorf("got level %q format %q", c.LogLevel, c.LogFormat)
				}
			},
		},
		{
			desc: "NRI keys, a boolean written as a flag writes it",
			file: "nri-enable = \"false\"\nnri-listen = \"/run/x/nri.sock\"\nnri-plugin-request-timeout = \"5s\"\n",
			check: func(t *testing.T, c *Config) {
				if c.NRIEnable || c.NRIListen != "/run/x/nri.sock" || c.NRIPluginRequestTimeout.Duration != 5*time.Second {
					t.Errorf("got enable %v listen %q timeout %v", c.NRIEnable, c.NRIListen, c.NRIPluginRequestTimeout)
				}
				if c.NRIPluginDir != DefaultNRIPluginDir || c.NRIPluginRegistrationTimeout.Duration != 5*time.Second {
					t.Errorf("defaults lost: %q %v", c.NRIPluginDir, c.NRIPluginRegistrationTimeout)
				}
			},
		},
		{desc: "NRI on by default", file: "-", check: func(t *testing.T, c *Config) {
			if !c.NRIEnable || c.NRIListen != DefaultNRIListen {
				t.Errorf("got enable %v listen %q", c.NRIEnable, c.NRIListen)
			}
		}},
		{desc: "bad boolean", file: "nri-enable = \"maybe\"\n", wantErr: "nri-enable"},
		{desc: "NRI timeout must be positive", file: "nri-plugin-request-timeout = \"0s\"\n", wantErr: `"nri-plugin-request-timeout"`},
		{desc: "NRI socket must be absolute", file: "nri-listen = \"nri.sock\"\n", wantErr: `"nri-listen"`},
		{desc: "unknown key is named", file: "lisen = \"/x.sock\"\n", wantErr: `unknown key "lisen"`},
		{desc: "unknown key in a drop-in names the drop-in", file: "-", dropIns: map[string]string{"a.toml": "bogus = 1\n"}, wantErr: `a.toml: unknown key "bogus"`},
		{desc: "bad log level", file: "log-level = \"loud\"\n", wantErr: `"log-level"`},
		{desc: "bad log format", file: "log-format = \"xml\"\n", wantErr: `"log-format"`},
		{desc: "relative path", file: "root = \"var/lib\"\n", wantErr: `"root"`},
		{desc: "empty listen", file: "listen = \"\"\n", wantErr: `"listen"`},
		{desc: "bad duration", file: "pull-progress-timeout = \"soon\"\n", wantErr: "pull-progress-timeout"},
		{desc: "negative duration", file: "pull-progress-timeout = \"-1s\"\n", wantErr: "pull-progress-timeout"},
		{desc: "bad metrics address", file: "metrics-address = \"9090\"\n", wantErr: `"metrics-address"`},
		{desc: "metrics host must be an address", file: "metrics-address = \"example.com:9090\"\n", wantErr: `"metrics-address"`},
		{desc: "negative parallel starts", file: "max-parallel-starts = -1\n", wantErr: `"max-parallel-starts"`},
		{desc: "too many parallel starts", file: "max-parallel-starts = 1000\n", wantErr: `"max-parallel-starts"`},
		{desc: "bad cgroup manager", file: "cgroup-manager = \"cgroupv3\"\n", wantErr: `"cgroup-manager"`},
		{desc: "bad seccomp-when-empty", file: "seccomp-when-empty = \"none\"\n", wantErr: `"seccomp-when-empty"`},
		{desc: "wrong type", file: "log-level = 3\n", wantErr: "log-level"},
		{desc: "TOML syntax error", file: "log-level = \n", wantErr: "config file"},
		{desc: "stream address must be an IP", file: "stream-address = \"example.com\"\n", wantErr: `"stream-address"`},
		{desc: "stream port out of range", file: "stream-port = 70000\n", wantErr: `"stream-port"`},
		{desc: "stream idle timeout must be positive", file: "stream-idle-timeout = \"0s\"\n", wantErr: `"stream-idle-timeout"`},
		{desc: "stream TLS cert without key", file: "stream-tls-cert = \"/etc/noded/s.crt\"\n", wantErr: `"stream-tls-cert"`},
		{desc: "stream TLS CA without a server certificate", file: "stream-tls-ca = \"/etc/noded/ca.crt\"\n", wantErr: `"stream-tls-ca"`},
		{desc: "stream TLS paths are absolute", file: "stream-tls-cert = \"s.crt\"\nstream-tls-key = \"s.key\"\n", wantErr: `"stream-tls-cert"`},
		{
			desc: "CDI spec dirs and pinned images",
			file: "cdi-spec-dirs = [\"/opt/cdi\"]\npinned-images = [\"quay.io/team/*\", \"*mirror*\", \"registry.k8s.io/pause:3.10\"]\n",
			check: func(t *testing.T, c *Config) {
				if len(c.CDISpecDirs) != 1 || c.CDISpecDirs[0] != "/opt/cdi" || len(c.PinnedImages) != 3 {
					t.Errorf("cdi-spec-dirs %v pinned-images %v", c.CDISpecDirs, c.PinnedImages)
				}
			},
		},
		{
			desc: "CDI off",
			file: "cdi-spec-dirs = []\n",
			check: func(t *testing.T, c *Config) {
				if len(c.CDISpecDirs) != 0 {
					t.Errorf("cdi-spec-dirs %v", c.CDISpecDirs)
				}
			},
		},
		{desc: "CDI spec dirs are absolute", file: "cdi-spec-dirs = [\"cdi\"]\n", wantErr: `"cdi-spec-dirs"`},
		{desc: "a pinned image pattern with a star inside", file: "pinned-images = [\"quay.io/*/app\"]\n", wantErr: `"pinned-images"`},
		{desc: "a pinned image suffix pattern", file: "pinned-images = [\"*:latest\"]\n", wantErr: `"pinned-images"`},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "noded.toml")
			if tt.file != "-" {
				write(t, file, tt.file)
			}
			for name, content := range tt.dropIns {
				write(t, filepath.Join(dir, "noded.toml.d", name), content)
			}
			cfg, err := Load(Sources{File: file, FileExplicit: tt.explicitFile, Dir: filepath.Join(dir, "noded.toml.d")})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

// The printed configuration must load back to the same values: operators
// start from `noded config > /etc/noded/noded.toml`.
func TestTOMLRoundTrip(t *testing.T) {
	cfg := Default()
	cfg.MetricsAddress = "127.0.0.1:9101"
	cfg.StorageOptions = []string{"overlay.mountopt=nodev"}
	out, err := cfg.TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys {
		if !strings.Contains(string(out), "\n"+k.Name+" = ") {
			t.Errorf("key %q missing from printed configuration", k.Name)
		}
	}
	path := write(t, filepath.Join(t.TempDir(), "noded.toml"), string(out))
	back, err := Load(Sources{File: path, FileExplicit: true})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := back.TOML()
	if string(again) != string(out) {
		t.Fatalf("round trip changed the configuration:\n%s\n---\n%s", out, again)
	}
}

// Every field of Config must be documented, or `noded config` prints an
// undocumented key.
func TestEveryKeyDocumented(t *testing.T) {
	out, err := Default().TOML()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if key, _, ok := strings.Cut(line, " = "); ok && !strings.HasPrefix(line, "#") && Help(key) == "" {
			t.Errorf("key %q has no documentation in Keys", key)
		}
	}
}

// The README's configuration reference is generated by `make readme-config`;
// this fails when a key or default changed without regenerating it.
func TestREADMEReferenceIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Skipf("no README: %v", err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- BEGIN noded config -->\n```toml\n")
	block, _, ok2 := strings.Cut(rest, "```\n<!-- END noded config -->")
	if !ok || !ok2 {
		t.Fatal("README has no generated configuration block")
	}
	cfg := Default()
	cfg.CgroupManager = "cgroupfs"
	want, err := cfg.TOML()
	if err != nil {
		t.Fatal(err)
	}
	if block != string(want) {
		t.Fatalf("README configuration reference is stale: run make readme-config")
	}
}

func TestApplyEnvironment(t *testing.T) {
	tests := []struct {
		desc, configured, env, want string
	}{
		{desc: "neither", want: ""},
		{desc: "environment fills an empty key", env: "/env/registries.conf", want: "/env/registries.conf"},
		{desc: "an explicit setting wins", configured: "/etc/noded/registries.conf", env: "/env/registries.conf", want: "/etc/noded/registries.conf"},
		{desc: "setting without environment", configured: "/etc/noded/registries.conf", want: "/etc/noded/registries.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			t.Setenv(RegistriesConfEnv, tt.env)
			cfg := Default()
			cfg.RegistriesConf = tt.configured
			cfg.ApplyEnvironment()
			if cfg.RegistriesConf != tt.want {
				t.Errorf("registries-conf = %q, want %q", cfg.RegistriesConf, tt.want)
			}
		})
	}
}

// The default plugin directories are a copy: changing one configuration
// changes neither the defaults nor another configuration.
func TestDefaultCNIPluginDirsAreACopy(t *testing.T) {
	a := Default()
	want := append([]Path(nil), a.CNIPluginDirs...)
	a.CNIPluginDirs[0] = "/changed"
	if b := Default(); b.CNIPluginDirs[0] != want[0] {
		t.Fatalf("defaults changed through a configuration: %v", b.CNIPluginDirs)
	}
}
