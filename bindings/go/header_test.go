package clove_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// A prototype's first line in clove.h: a return type at the start of the line, then the name.
// The callback typedef, `typedef void (*clove_event_callback)(...)`, does not match.
var prototype = regexp.MustCompile(`(?m)^\w[\w ]*[ *](clove_\w+)\(`)

func headerFunctions(header string) []string {
	var names []string
	for _, m := range prototype.FindAllStringSubmatch(header, -1) {
		names = append(names, m[1])
	}
	return names
}

// unbound lists the functions that neither the Go sources (as C.name) nor the C sources call.
func unbound(functions []string, goSource, cSource string) []string {
	var missing []string
	for _, name := range functions {
		if !strings.Contains(goSource, "C."+name+"(") && !strings.Contains(cSource, name+"(") {
			missing = append(missing, name)
		}
	}
	return missing
}

// packageSources concatenates the package's Go files (tests aside) and its C files.
func packageSources(t *testing.T) (goSource, cSource string) {
	t.Helper()
	read := func(pattern string, skip func(string) bool) string {
		paths, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		var all strings.Builder
		for _, path := range paths {
			if skip(path) {
				continue
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			all.Write(text)
		}
		return all.String()
	}
	goSource = read("*.go", func(path string) bool { return strings.HasSuffix(path, "_test.go") })
	cSource = read("*.c", func(string) bool { return false })
	return goSource, cSource
}

// cgo refuses to build against a changed signature; this catches a function added to the header
// that the package does not bind.
func TestEveryHeaderFunctionIsBound(t *testing.T) {
	header, err := os.ReadFile("../../include/clove.h")
	if err != nil {
		t.Fatal(err)
	}
	functions := headerFunctions(string(header))
	if len(functions) < 30 {
		t.Fatalf("found only %d functions in clove.h (%v): the prototype pattern no longer fits it", len(functions), functions)
	}
	goSource, cSource := packageSources(t)
	for _, name := range unbound(functions, goSource, cSource) {
		t.Errorf("%s is declared in include/clove.h but the Go package does not call it", name)
	}
}

func TestHeaderCheckFindsANewFunction(t *testing.T) {
	header := `typedef void (*clove_event_callback)(const struct clove_event *event, void *user_data);
uint32_t clove_abi_version(void);
const char *clove_version(void);
enum clove_status clove_runtime_snapshot(struct clove_runtime *rt,
                                         const char *path);
`
	functions := headerFunctions(header)
	if want := []string{"clove_abi_version", "clove_version", "clove_runtime_snapshot"}; !reflect.DeepEqual(functions, want) {
		t.Fatalf("parsed %v, want %v", functions, want)
	}
	goSource := "return int(C.clove_abi_version())"
	cSource := "return clove_version();"
	if got := unbound(functions, goSource, cSource); !reflect.DeepEqual(got, []string{"clove_runtime_snapshot"}) {
		t.Errorf("unbound = %v, want [clove_runtime_snapshot]", got)
	}
}
