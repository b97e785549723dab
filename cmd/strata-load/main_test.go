package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The test binary runs main itself when asked (re-executed with
// STRATA_LOAD_RUN_MAIN=1), so the exit status and the streams are the
// command's own.
func TestMain(m *testing.M) {
	if os.Getenv("STRATA_LOAD_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "STRATA_LOAD_RUN_MAIN=1")
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestUsageAndExitStatus(t *testing.T) {
	out, _, code := runMain(t, "--help")
	if code != 0 || !strings.Contains(out, "strata-load postgres --binding DIR") {
		t.Fatalf("--help: exit %d, output:\n%s", code, out)
	}
	_, errOut, code := runMain(t)
	if code != 1 || !strings.Contains(errOut, "name a workload") {
		t.Fatalf("no arguments: exit %d, stderr:\n%s", code, errOut)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/password", []byte("s3cret-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runMain(t, "redis", "--binding", dir, "-n", "1")
	if code != 1 || !strings.Contains(errOut, `strata-load: the binding has no "host" key`) {
		t.Fatalf("a binding without host: exit %d, stderr:\n%s", code, errOut)
	}
	if strings.Contains(out+errOut, "s3cret-value") {
		t.Fatal("the password was printed")
	}
}
