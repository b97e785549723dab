//go:build linux

package platform

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// dialInNetns opens a connection from inside a network namespace: the
// socket is created by a thread that has entered the namespace (a socket
// belongs to the namespace it was created in), and the thread then returns
// to the process's own namespace.
func dialInNetns(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer own.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", nsPath, err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: leave it locked so
		// the runtime retires it with this goroutine rather than reuse it.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("returning from %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
