package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// readIdle bounds the wait for the next byte of a transfer. While the
// server forks and writes, it sends a newline every second to keep the
// link alive, so a silent minute is a dead server.
const readIdle = time.Minute

// eofMarkLen is the length of the random end mark of a diskless transfer.
const eofMarkLen = 40

// Replica is one replica as Sentinel reports it.
type Replica struct {
	Addr   string
	Offset int64
}

// HealthyReplicas asks the Sentinel at sentinelAddr (plaintext, no
// password: the operator's Sentinels have none and their NetworkPolicy
// admits only the instance's pods, the operator and the snapshot job) for
// the replicas of master that are up and linked to their master, the most
// up to date first.
func HealthyReplicas(ctx context.Context, sentinelAddr, master string) ([]Replica, error) {
	c := goredis.NewSentinelClient(&goredis.Options{Addr: sentinelAddr, DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second})
	defer c.Close()
	all, err := c.Replicas(ctx, master).Result()
	if err != nil {
		return nil, fmt.Errorf("SENTINEL replicas %s at %s: %w", master, sentinelAddr, err)
	}
	var out []Replica
	for _, r := range all {
		flags := r["flags"]
		if strings.Contains(flags, "s_down") || strings.Contains(flags, "o_down") || strings.Contains(flags, "disconnected") || r["master-link-status"] != "ok" {
			continue
		}
		off, _ := strconv.ParseInt(r["slave-repl-offset"], 10, 64)
		out = append(out, Replica{Addr: net.JoinHostPort(r["ip"], r["port"]), Offset: off})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the Sentinel at %s knows no healthy replica of %s (of %d reported): the snapshot is taken from a replica only, never from the master", sentinelAddr, master, len(all))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Offset > out[j].Offset })
	return out, nil
}

// FetchRDB downloads a snapshot from the Redis at addr the way a replica
// does, and writes it to dst: AUTH, REPLCONF rdb-only 1 (Redis 7.0+: only
// the RDB, no replication stream after it; older servers refuse it and the
// connection is closed after the RDB all the same), REPLCONF capa eof (a
// diskless transfer: the server writes nothing to its own volume), SYNC,
// and the bulk payload in either of its two framings. It returns the
// number of bytes written. The payload is checked by VerifyFile, not here.
func FetchRDB(ctx context.Context, addr, password string, dst io.Writer) (int64, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReaderSize(conn, 1<<20)
	call := func(args ...string) (string, error) {
		_ = conn.SetDeadline(time.Now().Add(readIdle))
		if _, err := conn.Write(resp(args...)); err != nil {
			return "", err
		}
		line, err := readLine(r)
		if err != nil {
			return "", fmt.Errorf("%s: %w", args[0], err)
		}
		return line, nil
	}
	if password != "" {
		line, err := call("AUTH", password)
		if err != nil {
			return 0, err
		}
		if line != "+OK" {
			// Never echo the command: it holds the password.
			return 0, fmt.Errorf("AUTH refused: %s", line)
		}
	}
	if line, err := call("REPLCONF", "rdb-only", "1"); err != nil {
		return 0, err
	} else if line != "+OK" && !strings.HasPrefix(line, "-ERR") {
		return 0, fmt.Errorf("REPLCONF rdb-only: %s", line)
	}
	if line, err := call("REPLCONF", "capa", "eof"); err != nil {
		return 0, err
	} else if line != "+OK" {
		return 0, fmt.Errorf("REPLCONF capa eof: %s", line)
	}
	_ = conn.SetDeadline(time.Now().Add(readIdle))
	if _, err := conn.Write(resp("SYNC")); err != nil {
		return 0, err
	}
	for {
		_ = conn.SetDeadline(time.Now().Add(readIdle))
		line, err := readLine(r)
		if err != nil {
			return 0, fmt.Errorf("SYNC: %w", err)
		}
		switch {
		case line == "":
			continue // the keep-alive newline while the server forks
		case strings.HasPrefix(line, "-"):
			// -NOMASTERLINK: a replica that lost its master serves none.
			return 0, fmt.Errorf("SYNC refused: %s", line)
		case strings.HasPrefix(line, "$EOF:"):
			mark := []byte(strings.TrimPrefix(line, "$EOF:"))
			if len(mark) != eofMarkLen {
				return 0, fmt.Errorf("SYNC: end mark of %d bytes, want %d", len(mark), eofMarkLen)
			}
			return copyUntilMark(conn, r, dst, mark)
		case strings.HasPrefix(line, "$"):
			n, err := strconv.ParseInt(line[1:], 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("SYNC: bad payload length %q", line)
			}
			return copyN(conn, r, dst, n)
		default:
			return 0, fmt.Errorf("SYNC: unexpected reply %q", line)
		}
	}
}

// copyN copies a payload of known length, renewing the idle deadline.
func copyN(conn net.Conn, r *bufio.Reader, dst io.Writer, n int64) (int64, error) {
	var done int64
	buf := make([]byte, 1<<20)
	for done < n {
		_ = conn.SetDeadline(time.Now().Add(readIdle))
		chunk := buf
		if rest := n - done; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		k, err := r.Read(chunk)
		if k > 0 {
			if _, werr := dst.Write(chunk[:k]); werr != nil {
				return done, werr
			}
			done += int64(k)
		}
		if err != nil && done < n {
			return done, fmt.Errorf("SYNC: the payload ended after %d of %d bytes: %w", done, n, err)
		}
	}
	return done, nil
}

// copyUntilMark copies a diskless payload, which ends with the mark the
// header announced, holding back the last eofMarkLen bytes until it is
// known whether they are the mark (as Redis's own replica does).
func copyUntilMark(conn net.Conn, r *bufio.Reader, dst io.Writer, mark []byte) (int64, error) {
	var done int64
	pending := make([]byte, 0, 2<<20)
	buf := make([]byte, 1<<20)
	for {
		_ = conn.SetDeadline(time.Now().Add(readIdle))
		k, err := r.Read(buf)
		pending = append(pending, buf[:k]...)
		if bytes.HasSuffix(pending, mark) {
			body := pending[:len(pending)-len(mark)]
			if _, werr := dst.Write(body); werr != nil {
				return done, werr
			}
			return done + int64(len(body)), nil
		}
		if len(pending) > eofMarkLen {
			flush := pending[:len(pending)-eofMarkLen]
			if _, werr := dst.Write(flush); werr != nil {
				return done, werr
			}
			done += int64(len(flush))
			pending = append(pending[:0], pending[len(pending)-eofMarkLen:]...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("SYNC: the payload ended after %d bytes without its end mark: %w", done, err)
		}
	}
}

// resp encodes a command as a RESP array of bulk strings.
func resp(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// readLine reads one line without its CR LF (or lone LF: the keep-alive).
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
