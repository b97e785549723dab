package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// fileCredentials reads the broker's basic-auth user and password from
// <dir>/username and <dir>/password (a mounted Secret), re-reading at most
// every 10 seconds so a rotated Secret takes effect without a restart.
func fileCredentials(dir string) func() (string, string, error) {
	var (
		mu         sync.Mutex
		user, pass string
		read       time.Time
	)
	return func() (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(read) < 10*time.Second && user != "" {
			return user, pass, nil
		}
		u, err := os.ReadFile(filepath.Join(dir, "username"))
		if err != nil {
			return "", "", err
		}
		p, err := os.ReadFile(filepath.Join(dir, "password"))
		if err != nil {
			return "", "", err
		}
		user, pass = strings.TrimSpace(string(u)), strings.TrimSpace(string(p))
		if user == "" || pass == "" {
			return "", "", fmt.Errorf("%s/username and %s/password must not be empty", dir, dir)
		}
		read = time.Now()
		return user, pass, nil
	}
}

// envCredentials takes the user and password from the environment.
func envCredentials(user, pass string) func() (string, string, error) {
	return func() (string, string, error) {
		if user == "" || pass == "" {
			return "", "", fmt.Errorf("set STRATA_BROKER_USERNAME and STRATA_BROKER_PASSWORD, or --credentials-dir")
		}
		return user, pass, nil
	}
}
