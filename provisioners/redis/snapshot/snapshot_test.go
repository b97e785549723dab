package snapshot

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// Redis's own test vector (src/crc64.c): crc64(0, "123456789").
func TestChecksumIsRedisCRC64Jones(t *testing.T) {
	c := &crc64{}
	_, _ = c.Write([]byte("123456789"))
	if got := c.Sum64(); got != 0xe9c6d914c4b8d9ca {
		t.Fatalf("crc64(123456789) = %016x, Redis says e9c6d914c4b8d9ca", got)
	}
}

// rdbFile writes a framed RDB (header, body, EOF, checksum).
func rdbFile(t *testing.T, version string, body []byte, sum func(uint64) uint64) string {
	t.Helper()
	b := append([]byte("REDIS"+version), body...)
	b = append(b, rdbOpEOF)
	c := &crc64{}
	_, _ = c.Write(b)
	b = binary.LittleEndian.AppendUint64(b, sum(c.Sum64()))
	p := filepath.Join(t.TempDir(), "dump.rdb")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyFile(t *testing.T) {
	same := func(s uint64) uint64 { return s }
	body := []byte{0xfa, 0x09, 'r', 'e', 'd', 'i', 's', '-', 'v', 'e', 'r', 0x06, '7', '.', '0', '.', '1', '5'}
	for _, tc := range []struct {
		name, version string
		sum           func(uint64) uint64
		mutate        func([]byte) []byte
		err           string
	}{
		{name: "good", version: "0010", sum: same},
		{name: "bad checksum", version: "0010", sum: func(s uint64) uint64 { return s ^ 1 }, err: "does not match"},
		{name: "no checksum", version: "0011", sum: func(uint64) uint64 { return 0 }, err: "rdbchecksum no"},
		{name: "future version", version: "0099", sum: same, err: "RDB version"},
		{name: "not digits", version: "00x1", sum: same, err: "four-digit version"},
		{name: "truncated", version: "0010", sum: same, mutate: func(b []byte) []byte { return b[:len(b)-3] }, err: "no EOF opcode"},
		{name: "flipped byte", version: "0010", sum: same, mutate: func(b []byte) []byte { b[12] ^= 0x40; return b }, err: "does not match"},
		{name: "not an RDB", version: "0010", sum: same, mutate: func(b []byte) []byte { return append([]byte("GARBAGE!!"), b[9:]...) }, err: "does not start with REDIS"},
		{name: "too short", version: "0010", sum: same, mutate: func(b []byte) []byte { return b[:10] }, err: "shorter than an empty RDB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := rdbFile(t, tc.version, body, tc.sum)
			if tc.mutate != nil {
				raw, _ := os.ReadFile(p)
				g.Expect(os.WriteFile(p, tc.mutate(raw), 0o600)).To(Succeed())
			}
			info, err := VerifyFile(p)
			if tc.err == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(info.Version).To(Equal(10))
				return
			}
			g.Expect(err).To(MatchError(ErrCorrupt))
			g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
		})
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestExpiredKeepsTheNewest(t *testing.T) {
	g := NewWithT(t)
	now := at("2026-06-30T00:00:00Z")
	objs := []Object{{Key: "a", Time: at("2026-06-01T00:00:00Z")}, {Key: "b", Time: at("2026-06-20T00:00:00Z")}, {Key: "c", Time: at("2026-06-29T00:00:00Z")}}
	g.Expect(Expired(objs, 7*24*time.Hour, now)).To(Equal(objs[:2]))
	g.Expect(Expired(objs, 20*24*time.Hour, now)).To(Equal(objs[:1]))
	g.Expect(Expired(objs, time.Hour, now.Add(365*24*time.Hour))).To(Equal(objs[:2]), "never the newest, however old")
	g.Expect(Expired(objs[2:], time.Hour, now.Add(365*24*time.Hour))).To(BeEmpty())
	g.Expect(Expired(nil, time.Hour, now)).To(BeEmpty())
}

func TestChoose(t *testing.T) {
	g := NewWithT(t)
	objs := []Object{{Key: "a", Time: at("2026-06-01T00:00:00Z")}, {Key: "b", Time: at("2026-06-20T00:00:00Z")}}
	for which, want := range map[string]string{"latest": "b", "": "b", "2026-06-20T00:00:00Z": "b", "2026-06-19T23:59:59Z": "a", "2026-06-10T02:00:00+02:00": "a"} {
		o, err := Choose(objs, which)
		g.Expect(err).NotTo(HaveOccurred(), which)
		g.Expect(o.Key).To(Equal(want), which)
	}
	_, err := Choose(objs, "2026-05-01T00:00:00Z")
	g.Expect(err).To(MatchError(ContainSubstring("the oldest snapshot is from 2026-06-01T00:00:00Z")))
	_, err = Choose(objs, "yesterday")
	g.Expect(err).To(MatchError(ContainSubstring("neither \"latest\" nor an RFC 3339 time")))
	_, err = Choose(nil, "latest")
	g.Expect(err).To(MatchError(ContainSubstring("there is no snapshot")))
}

func TestEmptyDataDir(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	g.Expect(EmptyDataDir(dir)).To(BeTrue())
	g.Expect(os.Mkdir(filepath.Join(dir, "lost+found"), 0o700)).To(Succeed())
	g.Expect(os.Mkdir(filepath.Join(dir, RestoreDir), 0o700)).To(Succeed())
	g.Expect(EmptyDataDir(dir)).To(BeTrue(), "a fresh ext4 volume and a restore's staging folder hold no data")
	g.Expect(os.WriteFile(filepath.Join(dir, "dump.rdb"), nil, 0o600)).To(Succeed())
	g.Expect(EmptyDataDir(dir)).To(BeFalse())
}

func TestKeyLayout(t *testing.T) {
	g := NewWithT(t)
	s := &Store{StoreConfig: StoreConfig{Bucket: "b", Prefix: "/backups/eu/"}}
	g.Expect(s.Key("team-a", "inst-1", at("2026-06-01T12:34:56+02:00"))).To(Equal("backups/eu/team-a/redis/inst-1/20260601T103456Z.rdb"))
	s.Prefix = ""
	g.Expect(s.Dir("team-a", "inst-1")).To(Equal("team-a/redis/inst-1/"))
}

func TestMainRefusesIncompleteFlags(t *testing.T) {
	g := NewWithT(t)
	var log nopWriter
	g.Expect(Main(t.Context(), nil, log)).To(MatchError(ContainSubstring("usage")))
	g.Expect(Main(t.Context(), []string{"take", "--namespace", "a"}, log)).To(MatchError(ContainSubstring("--retention-days")))
	g.Expect(Main(t.Context(), []string{"restore-fetch"}, log)).To(MatchError(ContainSubstring("--from-instance")))
	g.Expect(Main(t.Context(), []string{"nope"}, log)).To(MatchError(ContainSubstring("unknown command")))
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
