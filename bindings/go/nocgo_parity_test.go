package kecscluster

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestNoCgoAPIParity keeps nocgo.go in step with the cgo files: a build with
// CGO_ENABLED=0 must declare exactly the exported names (functions, methods with
// their signatures, types with their exported fields or methods, variables and
// constants) that a cgo build declares, or callers that build both ways break.
// It reads the sources, so it runs (and guards) in either build.
func TestNoCgoAPIParity(t *testing.T) {
	withCgo := exportedAPI(t, true)
	withoutCgo := exportedAPI(t, false)
	for _, d := range diff(withCgo, withoutCgo) {
		t.Errorf("with cgo but not without (add it to nocgo.go): %s", d)
	}
	for _, d := range diff(withoutCgo, withCgo) {
		t.Errorf("without cgo but not with (remove it from nocgo.go or add it to the cgo files): %s", d)
	}
	if len(withCgo) < 10 {
		t.Fatalf("found only %d exported declarations with cgo: the parser saw the wrong files", len(withCgo))
	}
}

// exportedAPI lists the package's exported declarations, one normalised line
// each, as the go tool would compile the package with cgo on or off.
func exportedAPI(t *testing.T, cgo bool) map[string]bool {
	t.Helper()
	ctx := build.Default
	ctx.CgoEnabled = cgo
	pkg, err := ctx.ImportDir(".", 0)
	if err != nil {
		t.Fatalf("listing the package's files (cgo=%v): %v", cgo, err)
	}
	files := append(append([]string{}, pkg.GoFiles...), pkg.CgoFiles...)
	fset := token.NewFileSet()
	api := map[string]bool{}
	for _, name := range files {
		f, err := parser.ParseFile(fset, filepath.Join(pkg.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
		for _, decl := range f.Decls {
			for _, line := range declLines(decl) {
				api[line] = true
			}
		}
	}
	return api
}

func declLines(decl ast.Decl) []string {
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if !d.Name.IsExported() {
			return nil
		}
		if d.Recv == nil {
			return []string{"func " + d.Name.Name + signature(d.Type)}
		}
		recv := types.ExprString(d.Recv.List[0].Type)
		if !ast.IsExported(strings.TrimPrefix(recv, "*")) {
			return nil
		}
		return []string{"method (" + recv + ") " + d.Name.Name + signature(d.Type)}
	case *ast.GenDecl:
		var lines []string
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() {
					lines = append(lines, typeLines(s)...)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.IsExported() {
						lines = append(lines, d.Tok.String()+" "+n.Name)
					}
				}
			}
		}
		return lines
	}
	return nil
}

// typeLines describes a type by what callers can use: a struct's exported
// fields, an interface's methods, or the underlying type of anything else.
func typeLines(s *ast.TypeSpec) []string {
	name := "type " + s.Name.Name
	switch tt := s.Type.(type) {
	case *ast.StructType:
		lines := []string{name + " struct"}
		for _, f := range tt.Fields.List {
			for _, n := range f.Names {
				if n.IsExported() {
					lines = append(lines, name+" field "+n.Name+" "+types.ExprString(f.Type))
				}
			}
		}
		return lines
	case *ast.InterfaceType:
		lines := []string{name + " interface"}
		for _, m := range tt.Methods.List {
			if ft, ok := m.Type.(*ast.FuncType); ok {
				for _, n := range m.Names {
					lines = append(lines, name+" method "+n.Name+signature(ft))
				}
			} else {
				lines = append(lines, name+" embeds "+types.ExprString(m.Type))
			}
		}
		return lines
	default:
		return []string{name + " " + types.ExprString(s.Type)}
	}
}

// signature prints parameter and result types without names, which may differ
// between the real code and the stub.
func signature(ft *ast.FuncType) string {
	list := func(fl *ast.FieldList) string {
		if fl == nil {
			return ""
		}
		var parts []string
		for _, f := range fl.List {
			n := len(f.Names)
			if n == 0 {
				n = 1
			}
			for i := 0; i < n; i++ {
				parts = append(parts, types.ExprString(f.Type))
			}
		}
		return strings.Join(parts, ", ")
	}
	return "(" + list(ft.Params) + ") (" + list(ft.Results) + ")"
}

// diff is what a has and b lacks, sorted.
func diff(a, b map[string]bool) []string {
	var out []string
	for k := range a {
		if !b[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
