package log

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func TestFromContext(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	entry := logrus.NewEntry(logger).WithField("id", "r1")
	tests := []struct {
		name      string
		ctx       context.Context
		wantLines int
	}{
		{"carried logger", WithContext(context.Background(), entry), 1},
		{"no logger discards", context.Background(), 0},
		{"nil logger discards", WithContext(context.Background(), nil), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook.Reset()
			FromContext(tt.ctx).Info("x")
			if n := len(hook.AllEntries()); n != tt.wantLines {
				t.Fatalf("%d lines reached the logger, want %d", n, tt.wantLines)
			}
			if tt.wantLines > 0 && hook.LastEntry().Data["id"] != "r1" {
				t.Errorf("fields %v", hook.LastEntry().Data)
			}
		})
	}
	if Or(entry) != entry || Or(nil) == nil {
		t.Error("Or must return its argument, or a usable logger for nil")
	}
}

// globalLogging are logrus' package-level functions that write through
// (or hand out) the global logger.
var globalLogging = map[string]bool{
	"StandardLogger": true, "WithField": true, "WithFields": true, "WithError": true, "WithContext": true, "WithTime": true,
	"Trace": true, "Debug": true, "Info": true, "Print": true, "Warn": true, "Warning": true, "Error": true, "Fatal": true, "Panic": true,
	"Tracef": true, "Debugf": true, "Infof": true, "Printf": true, "Warnf": true, "Warningf": true, "Errorf": true, "Fatalf": true, "Panicf": true,
	"Traceln": true, "Debugln": true, "Infoln": true, "Println": true, "Warnln": true, "Warningln": true, "Errorln": true, "Fatalln": true, "Panicln": true,
	"SetLevel": true, "SetOutput": true, "SetFormatter": true, "AddHook": true,
}

// TestNoGlobalLogger fails when a package under internal/ logs through
// logrus' global logger: its lines would carry no request id and escape
// the daemon's configured output.
func TestNoGlobalLogger(t *testing.T) {
	root := filepath.Join("..")
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		name := logrusName(f)
		if name == "" {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name && globalLogging[sel.Sel.Name] {
				t.Errorf("%s: logrus.%s uses the global logger; log through log.FromContext(ctx) or the logger in the package's options", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("only %d files checked under internal/: the walk is broken", checked)
	}
}

// logrusName is the name file f imports logrus as ("" if it does not).
func logrusName(f *ast.File) string {
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != "github.com/sirupsen/logrus" {
			continue
		}
		if imp.Name != nil {
			return imp.Name.Name
		}
		return "logrus"
	}
	return ""
}
