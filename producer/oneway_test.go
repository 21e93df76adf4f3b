package producer_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// enqueueAllowed are the module's files (slash paths from its root) that
// may call an Enqueue method: the producer, campaign's batched enqueue
// (its tasks are checked by the producer's Guard and rules first), and the
// benchmark's bare-asynq baselines (no-op tasks it measures the producer
// against; docs/benchmarks.md).
var enqueueAllowed = []string{
	"campaign/submit.go",
	"cmd/bench/enqueue.go",
	"cmd/bench/latency.go",
	"cmd/bench/memory.go",
	"cmd/bench/rediscost.go",
	"cmd/bench/throughput.go",
}

// Issue 15's acceptance: outside producer (and campaign's batched enqueue)
// nothing calls asynq's Enqueue. The handlers' own follow-ups go through
// FollowUps. The check is by name (any x.Enqueue or x.EnqueueContext call
// in a non-test file), so a new caller cannot hide behind an interface.
func TestOnlyTheProducerEnqueues(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var found []string
	scanned := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, root+string(filepath.Separator)))
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		scanned++
		if strings.HasPrefix(rel, "producer/") || slices.Contains(enqueueAllowed, rel) {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Enqueue" || sel.Sel.Name == "EnqueueContext") {
				found = append(found, fset.Position(call.Pos()).String()[len(root)+1:])
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 100 {
		t.Fatalf("scanned %d files under %s; the walk is not seeing the module", scanned, root)
	}
	for _, at := range found {
		t.Errorf("%s enqueues past the producer package (use a Producer, or FollowUps for a handler's own follow-up)", at)
	}
}

// Issue 15's acceptance: cmd/enqueue is flags in, a producer call, an exit
// code out; it does not import the HTTP API.
func TestEnqueueCommandDoesNotImportHTTPAPI(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		goTool = p
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/sbagenthub/twilio-worker/cmd/enqueue").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/sbagenthub/twilio-worker/producer") {
		t.Fatalf("cmd/enqueue does not depend on producer; the list is wrong:\n%s", out)
	}
	if slices.Contains(deps, "github.com/sbagenthub/twilio-worker/httpapi") {
		t.Error("cmd/enqueue imports httpapi")
	}
}
