// Package snapshot copies Redis RDB snapshots off the cluster and back: it
// asks Sentinel for a healthy replica, downloads an RDB from it over the
// replication protocol, checks it, uploads it to S3, prunes the old ones,
// and fetches one for a restore. The broker binary runs it as its
// redis-snapshot subcommand (cmd/strata-broker), in the CronJob and the
// restore init container that provisioners/redis renders.
package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
)

// The RDB frame: "REDIS" and a four-digit version, then the data, then the
// EOF opcode 0xFF and the CRC-64 (little-endian) of everything before it.
const (
	rdbMagic     = "REDIS"
	rdbHeaderLen = 9
	rdbOpEOF     = 0xFF
	rdbTrailer   = 9 // the EOF opcode and the checksum
	// Redis 7.0 writes version 10, 7.2 version 11, 7.4 version 12; an
	// older server's file loads into a newer server, not the reverse.
	minRDBVersion = 1
	maxRDBVersion = 12
)

// The checksum is hand-written because no maintained Go library computes
// Redis's CRC-64: it is the Jones polynomial, reflected, with initial value
// 0 and no final xor, while hash/crc64 always inverts before and after
// (and RDB libraries parse values, which a frame check does not need).
const jonesPolyReflected = 0x95ac9329ac4bc9b5

var crcTable = func() *[256]uint64 {
	var t [256]uint64
	for i := range t {
		crc := uint64(i)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ jonesPolyReflected
			} else {
				crc >>= 1
			}
		}
		t[i] = crc
	}
	return &t
}()

// crc64 is Redis's crc64 as a hash.Hash64 (Sum is not used).
type crc64 struct{ crc uint64 }

var _ hash.Hash64 = (*crc64)(nil)

func (c *crc64) Write(p []byte) (int, error) {
	crc := c.crc
	for _, b := range p {
		crc = crcTable[byte(crc)^b] ^ crc>>8
	}
	c.crc = crc
	return len(p), nil
}
func (c *crc64) Sum64() uint64       { return c.crc }
func (c *crc64) Sum(b []byte) []byte { return binary.BigEndian.AppendUint64(b, c.crc) }
func (c *crc64) Reset()              { c.crc = 0 }
func (c *crc64) Size() int           { return 8 }
func (c *crc64) BlockSize() int      { return 1 }

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// ErrCorrupt is wrapped by every error of VerifyFile about the content.
var ErrCorrupt = errors.New("not a complete RDB snapshot")

// Info is what VerifyFile learned about a snapshot.
type Info struct {
	Version int
	Size    int64
}

// VerifyFile checks that path holds one complete RDB: the magic and a
// known version at the start, the EOF opcode and a matching CRC-64 at the
// end. A snapshot written with rdbchecksum off (checksum 0) is refused:
// nothing would then tell a truncated or altered file from a good one.
func VerifyFile(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	size := st.Size()
	if size < rdbHeaderLen+rdbTrailer {
		return Info{}, fmt.Errorf("%w: %d bytes is shorter than an empty RDB", ErrCorrupt, size)
	}
	header := make([]byte, rdbHeaderLen)
	if _, err := io.ReadFull(f, header); err != nil {
		return Info{}, err
	}
	if string(header[:len(rdbMagic)]) != rdbMagic || !isDigits(header[len(rdbMagic):]) {
		return Info{}, fmt.Errorf("%w: it does not start with REDIS and a four-digit version (starts with %q)", ErrCorrupt, header)
	}
	version, err := strconv.Atoi(string(header[len(rdbMagic):]))
	if err != nil || version < minRDBVersion || version > maxRDBVersion {
		return Info{}, fmt.Errorf("%w: RDB version %q is not one Redis 7 reads (%d–%d)", ErrCorrupt, header[len(rdbMagic):], minRDBVersion, maxRDBVersion)
	}
	sum := &crc64{}
	_, _ = sum.Write(header)
	if _, err := io.CopyN(sum, f, size-rdbHeaderLen-8); err != nil {
		return Info{}, err
	}
	trailer := make([]byte, 8)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return Info{}, err
	}
	// The byte before the checksum must be the EOF opcode: re-read it.
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-rdbTrailer); err != nil {
		return Info{}, err
	}
	if last[0] != rdbOpEOF {
		return Info{}, fmt.Errorf("%w: no EOF opcode before the checksum (truncated?)", ErrCorrupt)
	}
	want := binary.LittleEndian.Uint64(trailer)
	if want == 0 {
		return Info{}, fmt.Errorf("%w: it has no checksum (the server runs with rdbchecksum no)", ErrCorrupt)
	}
	if got := sum.Sum64(); got != want {
		return Info{}, fmt.Errorf("%w: CRC-64 %016x does not match the stored %016x (altered or truncated)", ErrCorrupt, got, want)
	}
	return Info{Version: version, Size: size}, nil
}
