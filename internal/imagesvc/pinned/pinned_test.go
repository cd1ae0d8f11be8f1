package pinned

import "testing"

func TestMatch(t *testing.T) {
	m, err := New([]string{
		"registry.k8s.io/pause:3.10",
		"quay.io/team/*",
		"*mirror*",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"registry.k8s.io/pause:3.10", true},
		{"Registry.K8s.io/pause:3.10", true}, // case ignored, as in CRI-O
		{"registry.k8s.io/pause:3.9", false},
		{"registry.k8s.io/pause:3.10-extra", false},
		{"quay.io/team/app:v1", true},
		{"quay.io/team/app@sha256:0123", true},
		{"docker.io/quay.io/team/app:v1", false}, // a prefix matches at the start
		{"quay.io/teams/app:v1", false},
		{"docker.io/library/mirror-tool:1", true},
		{"docker.io/library/busybox:latest", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Match(tc.name); got != tc.want {
				t.Errorf("Match(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
	var none *Matcher
	if none.Match("x") || (&Matcher{}).Match("x") {
		t.Error("an empty matcher pins")
	}
	all, _ := New([]string{"*"})
	if !all.Match("anything:1") {
		t.Error(`"*" pins nothing`)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		ok      bool
	}{
		{"docker.io/library/busybox:1.36", true},
		{"docker.io/*", true},
		{"*busybox*", true},
		{"*", true},
		{"**", true},
		{"", false},
		{"*:latest", false}, // no suffix form
		{"docker.io/*/busybox", false},
		{"*a*b*", false},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			if err := Check(tc.pattern); (err == nil) != tc.ok {
				t.Errorf("Check(%q) = %v, want ok=%v", tc.pattern, err, tc.ok)
			}
			if _, err := New([]string{tc.pattern}); (err == nil) != tc.ok {
				t.Errorf("New(%q) = %v, want ok=%v", tc.pattern, err, tc.ok)
			}
		})
	}
}
