package kecscluster

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"testing"
)

const headerPath = "../../include/kecs_cluster.h"

// headerStatuses is kecs_status_t as include/kecs_cluster.h declares it: name → number.
func headerStatuses(t *testing.T) map[string]int {
	t.Helper()
	src, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatalf("reading the header: %v", err)
	}
	enum := regexp.MustCompile(`(?s)typedef enum \{(.*?)\} kecs_status_t;`).FindSubmatch(src)
	if enum == nil {
		t.Fatalf("%s declares no kecs_status_t enum", headerPath)
	}
	statuses := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(KECS_STATUS_[A-Z_]+) = (\d+),`).FindAllSubmatch(enum[1], -1) {
		n, _ := strconv.Atoi(string(m[2]))
		statuses[string(m[1])] = n
	}
	if len(statuses) < 12 {
		t.Fatalf("found only %d statuses in %s: the pattern no longer fits the header", len(statuses), headerPath)
	}
	return statuses
}

// constValues lists the Code constants a file declares: name → the
// expression's source (a C name in errors_cgo.go, a number in errors_nocgo.go).
func constValues(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parsing %s: %v", file, err)
	}
	out := map[string]string{}
	for _, decl := range f.Decls {
		d, ok := decl.(*ast.GenDecl)
		if !ok || d.Tok != token.CONST {
			continue
		}
		for _, spec := range d.Specs {
			s := spec.(*ast.ValueSpec)
			for i, name := range s.Names {
				switch v := s.Values[i].(type) {
				case *ast.SelectorExpr: // C.KECS_STATUS_X
					out[name.Name] = v.Sel.Name
				case *ast.BasicLit:
					out[name.Name] = v.Value
				default:
					t.Fatalf("%s: %s has an unexpected value", file, name.Name)
				}
			}
		}
	}
	return out
}

// TestCodesMatchHeader: the cgo build takes every Code from the header, the
// build without cgo has the same names with the header's numbers.
func TestCodesMatchHeader(t *testing.T) {
	statuses := headerStatuses(t)
	fromC := constValues(t, "errors_cgo.go")
	literal := constValues(t, "errors_nocgo.go")
	named := map[string]bool{}
	for goName, cName := range fromC {
		n, ok := statuses[cName]
		if !ok {
			t.Errorf("errors_cgo.go: %s = C.%s, which the header does not declare", goName, cName)
			continue
		}
		if named[cName] {
			t.Errorf("errors_cgo.go: C.%s is used twice", cName)
		}
		named[cName] = true
		if got := literal[goName]; got != strconv.Itoa(n) {
			t.Errorf("errors_nocgo.go: %s = %q, the header's %s is %d", goName, got, cName, n)
		}
	}
	for cName := range statuses {
		if !named[cName] {
			t.Errorf("the header declares %s but errors_cgo.go has no Code for it", cName)
		}
	}
	for goName := range literal {
		if _, ok := fromC[goName]; !ok {
			t.Errorf("errors_nocgo.go declares %s, errors_cgo.go does not", goName)
		}
	}
}

// Every status an error can carry (all but OK), with the sentinel it matches.
var statusSentinels = []struct {
	code     Code
	sentinel error
}{
	{CodeInvalidArgument, ErrInvalidArgument},
	{CodeNotFound, ErrNotFound},
	{CodeAlreadyExists, ErrAlreadyExists},
	{CodeDockerUnavailable, ErrDockerUnavailable},
	{CodeImageUnavailable, ErrImageUnavailable},
	{CodeTimeout, ErrTimeout},
	{CodeCancelled, ErrCancelled},
	{CodeKubernetes, ErrKubernetes},
	{CodeIO, ErrIO},
	{CodeInternal, ErrInternal},
	{CodePanic, ErrInternal}, // a panic caught in the library is an internal error
	{CodeNodeFailed, ErrNodeFailed},
}

// TestErrSentinelsCoverEveryHeaderStatus: each status of the header (but OK)
// has a name and matches exactly one sentinel with errors.Is, its own one
// unless it is PANIC, and wrapping keeps the match.
func TestErrSentinelsCoverEveryHeaderStatus(t *testing.T) {
	sentinelOf := map[Code]error{}
	for _, s := range statusSentinels {
		sentinelOf[s.code] = s.sentinel
	}
	owner := map[error]Code{}
	for _, s := range statusSentinels {
		if s.code == CodePanic {
			continue
		}
		if c, dup := owner[s.sentinel]; dup {
			t.Errorf("%v and %v share the sentinel %v", c, s.code, s.sentinel)
		}
		owner[s.sentinel] = s.code
	}
	names := map[string]Code{}
	for cName, n := range headerStatuses(t) {
		code := Code(n)
		name := code.String()
		if name == fmt.Sprintf("code(%d)", n) {
			t.Errorf("%s (%d) has no name", cName, n)
		}
		if other, dup := names[name]; dup {
			t.Errorf("%s (%d) and %d are both called %q", cName, n, other, name)
		}
		names[name] = code
		if code == CodeOK {
			continue
		}
		want, ok := sentinelOf[code]
		if !ok {
			t.Errorf("%s (%d) has no sentinel", cName, n)
			continue
		}
		err := error(&Error{Code: code, Op: "Test", Message: "m"})
		wrapped := fmt.Errorf("outer: %w", err)
		for sentinel, c := range owner {
			if got := errors.Is(wrapped, sentinel); got != (sentinel == want) {
				t.Errorf("errors.Is(%s error, sentinel of %v) = %v", cName, c, got)
			}
		}
		var e *Error
		if !errors.As(wrapped, &e) || e.Code != code {
			t.Errorf("errors.As on a wrapped %s error gave %v", cName, e)
		}
	}
}

func TestErrNodeFailed(t *testing.T) {
	if CodeNodeFailed != 12 || CodePanic != 11 {
		t.Fatalf("CodeNodeFailed = %d, CodePanic = %d; the numbers are the header's and never change", CodeNodeFailed, CodePanic)
	}
	err := &Error{Code: CodeNodeFailed, Op: "CreateCluster", Cluster: "web", Message: "node kecs-web-server-0 exited (code 1) before it was ready"}
	if !errors.Is(err, ErrNodeFailed) || errors.Is(err, ErrInternal) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a node-failed error must match ErrNodeFailed only")
	}
	if CodeNodeFailed.String() != "node failed" || ErrNodeFailed.Error() != "kecscluster: node failed" {
		t.Fatalf("names: %q, %q", CodeNodeFailed.String(), ErrNodeFailed.Error())
	}
}
