//go:build linux

// Package strimzimodel checks Kafka objects against Strimzi's own API
// model. Strimzi's operator cannot be built here (only io.strimzi:api is on
// Maven Central), so Kafka is proven on a real Kafka broker (kafkatest) and
// the objects Strata renders are additionally read by Strimzi's model
// classes, with Jackson as the operator reads them: a small test-only Java
// program (pom.xml and src/ beside this file) fails on unknown properties,
// deprecated properties, types and values, values the model's schema
// annotations reject, and Kafka config keys the operator forbids.
//
// io.strimzi:api 1.2.0 is compiled for Java 21 and Debian 12's JDK is 17,
// so the program is built and run with a JDK >= 21 found on the machine
// (JAVA_HOME, else /usr/lib/jvm). It is built once into
// <repo>/.cache/strimzimodel; Maven downloads its dependencies into ~/.m2
// on first use. A missing JDK or Maven fails the test; it never skips.
package strimzimodel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// MinJava is the JDK io.strimzi:api 1.2.0 is compiled for.
	MinJava = 21
	// InstallHint says how to get what the check needs.
	InstallHint = "install Maven (apt-get install maven) and a JDK 21 or newer: Debian 12 ships only 17, so add " +
		"Eclipse Temurin (Adoptium's apt repository: apt-get install temurin-21-jdk) or set JAVA_HOME to a JDK >= 21"
	// linePrefix starts each verdict line the program prints.
	linePrefix = "STRIMZI-MODEL "
	// buildTimeout bounds `mvn package`, which downloads the dependencies
	// the first time on a machine.
	buildTimeout = 10 * time.Minute
	runTimeout   = 2 * time.Minute
)

// jvmDir is where Debian and Temurin's packages install JDKs (a variable
// so a test can point it at an empty directory).
var jvmDir = "/usr/lib/jvm"

// Problem is one thing Strimzi's model objects to.
type Problem struct {
	// Path is the property's JSON path in the object ("" for the whole).
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Verdict is the check's result for one file.
type Verdict struct {
	File     string    `json:"file"`
	Kind     string    `json:"kind"`
	Name     string    `json:"name"`
	OK       bool      `json:"ok"`
	Problems []Problem `json:"problems"`
}

// ProjectDir is the Maven project's directory (this package's).
func ProjectDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// buildDir is where pom.xml builds the program (<repo>/.cache/strimzimodel/target).
func buildDir() string {
	return filepath.Join(ProjectDir(), "..", "..", ".cache", "strimzimodel", "target")
}

// FindJDK returns the home of a JDK >= MinJava: JAVA_HOME if it is one,
// else the newest under /usr/lib/jvm.
func FindJDK() (home string, major int, err error) {
	if jh := os.Getenv("JAVA_HOME"); jh != "" && javaMajor(jh) >= MinJava {
		return jh, javaMajor(jh), nil
	}
	dirs, _ := filepath.Glob(filepath.Join(jvmDir, "*"))
	var seen []string
	for _, dir := range dirs {
		v := javaMajor(dir)
		seen = append(seen, fmt.Sprintf("%s (%s)", dir, versionText(v)))
		if v >= MinJava && v > major {
			home, major = dir, v
		}
	}
	if home == "" {
		return "", 0, fmt.Errorf("no JDK >= %d found (io.strimzi:api 1.2.0 is compiled for Java %d); JAVA_HOME=%q, %s has [%s]: %s",
			MinJava, MinJava, os.Getenv("JAVA_HOME"), jvmDir, strings.Join(seen, ", "), InstallHint)
	}
	return home, major, nil
}

func versionText(v int) string {
	if v == 0 {
		return "not a JDK"
	}
	return "Java " + strconv.Itoa(v)
}

// javaMajor reads JAVA_VERSION="25.0.3" from a JDK's release file (0 if
// there is none or it has no bin/java).
func javaMajor(home string) int {
	if _, err := os.Stat(filepath.Join(home, "bin", "java")); err != nil {
		return 0
	}
	f, err := os.Open(filepath.Join(home, "release"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "JAVA_VERSION=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		major, _, _ := strings.Cut(v, ".")
		if major == "1" { // 1.8.0 style
			return 8
		}
		n, _ := strconv.Atoi(major)
		return n
	}
	return 0
}

// Checker runs the built program.
type Checker struct {
	JavaHome string
	// Built is how long building took (zero when the jar was up to date).
	Built time.Duration
}

var (
	buildMu sync.Mutex
	built   *Checker
)

// Build finds a JDK and builds the program with Maven unless the jar is
// newer than pom.xml and src/ (once per process; a file lock keeps
// parallel test processes from building it together).
func Build() (*Checker, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if built != nil {
		return built, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return nil, fmt.Errorf("mvn is not on PATH (%w): %s", err, InstallHint)
	}
	home, _, err := FindJDK()
	if err != nil {
		return nil, err
	}
	c := &Checker{JavaHome: home}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "strata-strimzimodel-build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking the Maven build: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	stale, err := jarStale(filepath.Join(buildDir(), "strimzi-model-check.jar"))
	if err != nil {
		return nil, err
	}
	if stale {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		lib := filepath.Join(buildDir(), "lib")
		// Stale dependency jars (an older pin) must not stay on the class path.
		_ = os.RemoveAll(lib)
		cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "-f", filepath.Join(ProjectDir(), "pom.xml"),
			"package", "dependency:copy-dependencies", "-DincludeScope=runtime", "-DoutputDirectory="+lib)
		cmd.Env = append(os.Environ(), "JAVA_HOME="+home)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("building the Strimzi model check (JAVA_HOME=%s mvn package in %s) failed: %w\n%s\n(%s)",
				home, ProjectDir(), err, tail(string(out), 40), InstallHint)
		}
		c.Built = time.Since(start)
	}
	built = c
	return c, nil
}

// jarStale says whether jar is missing or older than pom.xml or a file
// under src/.
func jarStale(jar string) (bool, error) {
	st, err := os.Stat(jar)
	if err != nil {
		return true, nil
	}
	stale := false
	err = filepath.WalkDir(ProjectDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (filepath.Base(p) != "pom.xml" && !strings.HasSuffix(p, ".java")) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().After(st.ModTime()) {
			stale = true
		}
		return nil
	})
	return stale, err
}

// Check runs the program on files and returns its verdicts by file name.
func (c *Checker) Check(files []string) (map[string]Verdict, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cp := filepath.Join(buildDir(), "strimzi-model-check.jar") + string(os.PathListSeparator) + filepath.Join(buildDir(), "lib", "*")
	args := append([]string{"-XX:+UseSerialGC", "-Xshare:auto", "-cp", cp, "dev.strata.strimzimodel.Check"}, files...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.JavaHome, "bin", "java"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("the Strimzi model check failed: %w\n%s%s", err, tail(string(out), 20), tail(stderr.String(), 40))
	}
	verdicts := map[string]Verdict{}
	for _, line := range strings.Split(string(out), "\n") {
		js, ok := strings.CutPrefix(line, linePrefix)
		if !ok {
			continue
		}
		var v Verdict
		if err := json.Unmarshal([]byte(js), &v); err != nil {
			return nil, fmt.Errorf("unreadable verdict %q: %w", line, err)
		}
		verdicts[v.File] = v
	}
	var missing []string
	for _, f := range files {
		if _, ok := verdicts[filepath.Base(f)]; !ok {
			missing = append(missing, filepath.Base(f))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("no verdict for %s:\n%s%s", strings.Join(missing, ", "), tail(string(out), 20), tail(stderr.String(), 40))
	}
	return verdicts, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
