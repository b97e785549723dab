package seedfetch

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	. "github.com/onsi/gomega"

	"github.com/strata-dev/strata/integration/s3test"
)

// Against a real S3 (versitygw on loopback, the platform's S3): an
// archive and plain SQL land under their names, byte for byte; a missing
// key, a missing bucket and wrong keys are named for what to fix; a bound
// is kept; a plain-HTTP endpoint is refused unless a test allows it.
func TestFetchFromRealS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "seeds")
	ctx := context.Background()
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("seeds"), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	archive := append([]byte("PGDMP\x01\x0e\x00"), bytes.Repeat([]byte{0, 1, 2, 3}, 300_000)...)
	put("orders/2026-12-01.pgdump", archive)
	put("orders.sql", []byte("CREATE TABLE t (id int);\n"))
	base := Config{Bucket: "seeds", Region: s3test.Region, EndpointURL: srv.Endpoint, AllowHTTP: true}

	tests := []struct {
		name    string
		change  func(c *Config)
		client  *s3.Client
		file    string
		content []byte
		err     []string
	}{
		{name: "archive", change: func(c *Config) { c.Key = "orders/2026-12-01.pgdump" }, file: ArchiveFile, content: archive},
		{name: "plain SQL", change: func(c *Config) { c.Key = "orders.sql" }, file: SQLFile, content: []byte("CREATE TABLE t (id int);\n")},
		{name: "missing key", change: func(c *Config) { c.Key = "orders/missing.pgdump" },
			err: []string{"parameters.seed.s3.key: there is no object s3://seeds/orders/missing.pgdump", "404"}},
		{name: "missing bucket", change: func(c *Config) { c.Bucket, c.Key = "no-such-seeds", "orders.sql" },
			err: []string{"parameters.seed.s3.bucket: there is no bucket no-such-seeds"}},
		{name: "wrong keys", change: func(c *Config) { c.Key = "orders.sql" },
			client: s3.New(s3.Options{Region: s3test.Region, BaseEndpoint: aws.String(srv.Endpoint), UsePathStyle: true,
				Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKeyID, "not-the-secret", "")}),
			err: []string{"parameters.seed.s3: reading s3://seeds/orders.sql was denied (S3 403", "credentials_secret"}},
		{name: "larger than the bound", change: func(c *Config) { c.Key, c.MaxBytes = "orders/2026-12-01.pgdump", 1000 },
			err: []string{"parameters.seed.s3.key: s3://seeds/orders/2026-12-01.pgdump has 1200008 bytes, more than the 1000"}},
		{name: "plain HTTP refused", change: func(c *Config) { c.Key, c.AllowHTTP = "orders.sql", false },
			err: []string{"parameters.seed.s3.endpoint:", "is not https://"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			c := base
			c.Dir = t.TempDir()
			tc.change(&c)
			client := tc.client
			if client == nil && c.AllowHTTP {
				client = srv.Client()
			}
			name, n, err := Fetch(ctx, c, client)
			if tc.err != nil {
				g.Expect(err).To(HaveOccurred())
				for _, s := range tc.err {
					g.Expect(err.Error()).To(ContainSubstring(s))
				}
				g.Expect(err.Error()).NotTo(ContainSubstring("\n"))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(name).To(Equal(tc.file))
			g.Expect(n).To(Equal(int64(len(tc.content))))
			got, err := os.ReadFile(filepath.Join(c.Dir, name))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(bytes.Equal(got, tc.content)).To(BeTrue(), "the file differs from the object")
		})
	}
}

// The command reads its credentials from the SDK's chain, refuses plain
// HTTP (it has no switch for it) and leaves the failure's description in
// the termination log.
func TestMain(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	term := filepath.Join(dir, "termination-log")
	var log bytes.Buffer
	err := Main(context.Background(), []string{"--bucket", "seeds", "--key", "k", "--endpoint-url", "http://127.0.0.1:1", "--dir", dir, "--termination-log", term}, &log)
	g.Expect(err).To(MatchError(ContainSubstring("parameters.seed.s3.endpoint:")))
	msg, rerr := os.ReadFile(term)
	g.Expect(rerr).NotTo(HaveOccurred())
	g.Expect(string(msg)).To(Equal(err.Error()))

	err = Main(context.Background(), []string{"--bucket", "seeds"}, &log)
	g.Expect(err).To(MatchError(HavePrefix("usage: postgres-seed-fetch")))
	g.Expect(strings.Contains(Usage, "IRSA")).To(BeTrue())
}

// Over TLS from a store whose certificate a private CA signed (the
// platform's S3, an on-premises store): refused while the fetch does not
// trust the CA, fetched once CABundleEnv holds it, with the SDK's own
// client and the keys from the environment, as in the Job.
func TestFetchOverTLSWithAPrivateCA(t *testing.T) {
	g := NewWithT(t)
	srv := s3test.StartTLS(t)
	srv.CreateBucket(t, "seeds")
	srv.Env(t)
	ctx := context.Background()
	archive := append([]byte("PGDMP\x01\x0e\x00"), bytes.Repeat([]byte{7}, 4096)...)
	_, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("seeds"), Key: aws.String("orders.pgdump"), Body: bytes.NewReader(archive)})
	g.Expect(err).NotTo(HaveOccurred())
	c := Config{Bucket: "seeds", Key: "orders.pgdump", Region: s3test.Region, EndpointURL: srv.Endpoint, Dir: t.TempDir()}

	_, _, err = Fetch(ctx, c, nil)
	g.Expect(err).To(MatchError(ContainSubstring("parameters.seed.s3.endpoint: reading s3://seeds/orders.pgdump failed: the endpoint's TLS certificate is not trusted (x509: ")))
	g.Expect(err.Error()).To(ContainSubstring("postgres.seedCABundle"))

	t.Setenv(CABundleEnv, "not a certificate")
	err = Main(ctx, []string{"--bucket", "seeds", "--key", "orders.pgdump", "--endpoint-url", srv.Endpoint, "--dir", t.TempDir()}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(ContainSubstring("parameters.seed.s3.endpoint: the broker's postgres.seedCABundle holds no PEM certificate")))

	t.Setenv(CABundleEnv, string(srv.CAPEM))
	dir := t.TempDir()
	var log bytes.Buffer
	g.Expect(Main(ctx, []string{"--bucket", "seeds", "--key", "orders.pgdump", "--endpoint-url", srv.Endpoint, "--region", s3test.Region, "--dir", dir}, &log)).To(Succeed())
	got, err := os.ReadFile(filepath.Join(dir, ArchiveFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(got, archive)).To(BeTrue())
}
