// A Go host embeds Clove through the cgo package: start the runtime, spawn two sandboxed Python
// agents, watch the memory hog get OOM-killed alone while its sibling keeps answering.
//
// Usage: go-host [repository root], by default the working directory.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"clove.dev/clove"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go-host:", err)
		os.Exit(1)
	}
}

func run() error {
	repo := "."
	if len(os.Args) > 1 {
		repo = os.Args[1]
	}
	repo, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	agent := func(name string, memory uint64) clove.SpawnSpec {
		return clove.SpawnSpec{
			Name:      name,
			Argv:      []string{"/usr/bin/python3", filepath.Join(repo, "examples", "agents", name+".py")},
			Env:       map[string]string{"PYTHONPATH": filepath.Join(repo, "bindings", "python")},
			Sandboxed: true,
			Stdio:     clove.StdioNull,
			Limits:    clove.Limits{MemoryBytes: memory},
		}
	}

	rt, err := clove.NewRuntime()
	if err != nil {
		return err
	}
	defer rt.Close()
	ctx := context.Background()
	hog, err := rt.Spawn(ctx, agent("hog", 50<<20))
	if err != nil {
		return err
	}
	steady, err := rt.Spawn(ctx, agent("steady", 0))
	if err != nil {
		return err
	}

	// Each agent's lifecycle as the host saw it, and when each one ended.
	seen := map[uint64][]string{}
	ended := map[uint64]time.Time{}
	for len(ended) < 2 {
		next, cancel := context.WithTimeout(ctx, 30*time.Second)
		event, err := rt.NextEvent(next)
		cancel()
		if err != nil {
			return fmt.Errorf("no event within 30 s: %w", err)
		}
		step := event.Kind.String()
		if event.Kind == clove.EventExited {
			ended[event.AgentID] = event.Time
			// A sandboxed program killed by signal s ends its sandbox with code 128 + s, as shells say.
			step = fmt.Sprintf("exited (%v)", event.Exit)
		}
		seen[event.AgentID] = append(seen[event.AgentID], step)
	}
	for _, a := range []struct {
		name string
		id   uint64
	}{{"hog", hog.ID}, {"steady", steady.ID}} {
		fmt.Printf("%s: %s\n", a.name, strings.Join(seen[a.id], " -> "))
	}

	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	steadyExit, err := steady.Wait(wait)
	if err != nil {
		return err
	}
	hogExit, err := hog.Wait(wait)
	if err != nil {
		return err
	}
	if steadyExit.Code == 0 && hogExit.OOMKilled && !ended[hog.ID].After(ended[steady.ID]) {
		fmt.Println("the hog was killed alone while steady kept answering")
	}
	return nil
}
