// Package common holds what the Go compat programs share: the scenario dispatch, the
// COMPAT-RESULT line, check helpers and unique topic/group names.
//
// A program is run as `PROGRAM SCENARIO BOOTSTRAP` and prints exactly one line
// `COMPAT-RESULT {"status": "pass"|"fail"|"na", "detail": "..."}` on stdout.
package common

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Prefix starts the one result line the runner looks for.
const Prefix = "COMPAT-RESULT "

// LargeSize is a value just under the default max.message.bytes (1048588) once batch
// overhead is added; OverSize is over it, so the broker must refuse it (MESSAGE_TOO_LARGE).
const (
	LargeSize = 1_000_000
	OverSize  = 1_100_000
)

// Scenario runs one feature against the broker at bootstrap; the string is a note for the report.
type Scenario func(bootstrap string) string

// notSupported marks a feature the client does not offer: the cell is n/a, not a failure.
type notSupported struct{ reason string }

// checkFailed is a failed expectation of a scenario.
type checkFailed struct{ msg string }

// NA ends the scenario as n/a with the reason.
func NA(format string, args ...any) {
	panic(notSupported{fmt.Sprintf(format, args...)})
}

// Check fails the scenario with the message unless cond holds.
func Check(cond bool, format string, args ...any) {
	if !cond {
		panic(checkFailed{fmt.Sprintf(format, args...)})
	}
}

// Must fails the scenario with err (prefixed by what was being done) unless it is nil.
func Must(err error, what string) {
	if err != nil {
		panic(checkFailed{what + ": " + err.Error()})
	}
}

// Fatalf fails the scenario with a message.
func Fatalf(format string, args ...any) {
	panic(checkFailed{fmt.Sprintf(format, args...)})
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TopicName is a fresh topic name for one cell.
func TopicName(client, scenario string) string {
	return strings.ReplaceAll(fmt.Sprintf("compat-%s-%s-%s", client, scenario, suffix()), "_", "-")
}

// GroupName is a fresh consumer group id for one cell.
func GroupName(client, scenario string) string {
	return fmt.Sprintf("compat-g-%s-%s-%s", client, scenario, suffix())
}

// Payloads are n distinct values prefix-00000, prefix-00001, ...
func Payloads(n int, prefix string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte(fmt.Sprintf("%s-%05d", prefix, i))
	}
	return out
}

// LargeValue is n random bytes (incompressible, so the codec cannot shrink it under a limit).
func LargeValue(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// WaitUntil polls fn until it returns true; fails the scenario after timeout.
func WaitUntil(timeout time.Duration, what string, interval time.Duration, fn func() bool) {
	deadline := time.Now().Add(timeout)
	for !fn() {
		if time.Now().After(deadline) {
			Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(interval)
	}
}

// Codecs are the compression codecs of the compression_<codec> scenarios.
var Codecs = []string{"gzip", "snappy", "lz4", "zstd"}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// run executes one scenario and turns its outcome (note, n/a, failed check, panic) into a result.
func run(client string, fn Scenario, bootstrap string) (status, detail string) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		switch v := r.(type) {
		case notSupported:
			status, detail = "na", v.reason
		case checkFailed:
			status, detail = "fail", firstLine(v.msg)
		default:
			fmt.Fprintf(os.Stderr, "panic: %v\n%s", r, debug.Stack())
			status, detail = "fail", firstLine(fmt.Sprintf("panic: %v", r))
		}
	}()
	return "pass", fn(bootstrap)
}

// Main dispatches `PROGRAM SCENARIO BOOTSTRAP` to scenarios and prints the result line.
// A scenario the program does not know is n/a.
func Main(client string, scenarios map[string]Scenario) {
	if len(os.Args) != 3 {
		fmt.Fprintf(os.Stderr, "usage: %s SCENARIO BOOTSTRAP\n", os.Args[0])
		os.Exit(2)
	}
	scenario, bootstrap := os.Args[1], os.Args[2]
	status, detail := "na", client+" has no implementation of this feature"
	if fn, ok := scenarios[scenario]; ok {
		status, detail = run(client, fn, bootstrap)
	}
	line, _ := json.Marshal(map[string]string{"status": status, "detail": detail})
	fmt.Println(Prefix + string(line))
}

// Assignment formats two members' partitions as the Python clients do: "[0, 1] / [2, 3]".
func Assignment[T int | int32](a, b []T) string {
	list := func(ps []T) string {
		parts := make([]string, len(ps))
		for i, p := range ps {
			parts[i] = fmt.Sprint(p)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "assignment " + list(a) + " / " + list(b)
}

// SameValues tells whether two lists of record values are equal, in order.
func SameValues(a, b [][]byte) bool { return slices.EqualFunc(a, b, bytes.Equal) }

// Ctx is a background context that times out after d.
func Ctx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
