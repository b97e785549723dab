// Package seedfetch downloads one S3 object, a PostgreSQL dump to seed an
// instance from, into a local directory: the first step of a seed from S3
// (parameters.seed.s3), run by the broker's own binary as an init
// container (strata-broker postgres-seed-fetch) before the PostgreSQL
// image restores the file.
//
// Its failures are written for people: the parameter to fix and why
// (no such key, no such bucket, access denied), never the object's
// content. The same text goes to the container's termination message
// (--termination-log), which Kubernetes keeps in the pod's status, so
// whoever watches the Job can report it without reading the log.
package seedfetch

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Usage is the command's synopsis.
const Usage = "usage: postgres-seed-fetch --bucket B --key K [--endpoint-url https://…] [--region R] --dir D [--max-bytes N] [--termination-log F]\n" +
	"Credentials come from the AWS SDK's default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a web identity token (IRSA, EKS Pod Identity)"

// File names in the directory: the restore step picks its tool by name.
const (
	// ArchiveFile is a pg_dump custom-format archive (pg_restore).
	ArchiveFile = "seed.pgdump"
	// SQLFile is plain SQL (psql).
	SQLFile = "seed.sql"
)

// CABundleEnv, when set, holds PEM certificates the fetch trusts besides
// the system's roots: an S3-compatible store whose certificate a private
// CA signed (the broker's postgres.seedCABundle).
const CABundleEnv = "STRATA_S3_CA_BUNDLE"

// archiveMagic starts every pg_dump custom-format archive (-Fc).
const archiveMagic = "PGDMP"

// Config is one download.
type Config struct {
	Bucket, Key string
	// EndpointURL is an S3-compatible store's endpoint; empty: AWS.
	EndpointURL string
	Region      string
	// Dir receives ArchiveFile or SQLFile.
	Dir string
	// MaxBytes bounds the download (the directory is a size-limited
	// emptyDir; a larger object would fail there with a less clear error).
	MaxBytes int64
	// CABundle is PEM trusted besides the system's roots (CABundleEnv).
	CABundle string
	// AllowHTTP lets the tests reach a plain-HTTP S3 on loopback; the
	// command never sets it: a dump holds a database's rows.
	AllowHTTP bool
}

// Main runs the command with its arguments.
func Main(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("postgres-seed-fetch", flag.ContinueOnError)
	fs.SetOutput(log)
	var c Config
	fs.StringVar(&c.Bucket, "bucket", "", "S3 bucket")
	fs.StringVar(&c.Key, "key", "", "the object's key")
	fs.StringVar(&c.EndpointURL, "endpoint-url", "", "S3 endpoint of an S3-compatible store, https:// (empty: AWS)")
	fs.StringVar(&c.Region, "region", "us-east-1", "S3 region")
	fs.StringVar(&c.Dir, "dir", "", "directory that receives "+ArchiveFile+" or "+SQLFile)
	fs.Int64Var(&c.MaxBytes, "max-bytes", 0, "refuse objects larger than this (0: no bound)")
	termination := fs.String("termination-log", "", "file that receives the failure's description (the container's terminationMessagePath)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Bucket == "" || c.Key == "" || c.Dir == "" {
		return errors.New(Usage)
	}
	c.CABundle = os.Getenv(CABundleEnv)
	name, size, err := Fetch(ctx, c, nil)
	if err != nil {
		if *termination != "" {
			// Best effort: the error is returned (and logged) anyway.
			_ = os.WriteFile(*termination, []byte(err.Error()), 0o600)
		}
		return err
	}
	fmt.Fprintf(log, "postgres-seed-fetch: s3://%s/%s: %d bytes into %s\n", c.Bucket, c.Key, size, filepath.Join(c.Dir, name))
	return nil
}

// Fetch downloads the object into c.Dir as ArchiveFile or SQLFile (by
// its first bytes) and returns the name and size. client nil: one from
// the configuration and the SDK's default credential chain.
func Fetch(ctx context.Context, c Config, client *s3.Client) (string, int64, error) {
	if err := checkEndpoint(c); err != nil {
		return "", 0, err
	}
	if client == nil {
		opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(c.Region)}
		if c.CABundle != "" {
			// Added to the system's roots: the SDK's own CA bundle
			// option would replace them.
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM([]byte(c.CABundle)) {
				return "", 0, fmt.Errorf("parameters.seed.s3.endpoint: the broker's postgres.seedCABundle holds no PEM certificate; the platform team corrects it")
			}
			opts = append(opts, awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
				if tr.TLSClientConfig == nil {
					tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
				}
				tr.TLSClientConfig.RootCAs = pool
			})))
		}
		cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return "", 0, fmt.Errorf("parameters.seed.s3: configuring the S3 client (credentials, the CA bundle): %w", err)
		}
		client = s3.NewFromConfig(cfg, func(o *s3.Options) {
			if c.EndpointURL != "" {
				// S3-compatible stores serve buckets as paths.
				o.BaseEndpoint = aws.String(c.EndpointURL)
				o.UsePathStyle = true
			}
		})
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(c.Key)})
	if err != nil {
		return "", 0, Explain(c.Bucket, c.Key, err)
	}
	defer out.Body.Close()
	if c.MaxBytes > 0 && out.ContentLength != nil && *out.ContentLength > c.MaxBytes {
		return "", 0, fmt.Errorf("parameters.seed.s3.key: s3://%s/%s has %d bytes, more than the %d the seed's volume takes; seed a smaller dump, or restore it on demand through an owner binding",
			c.Bucket, c.Key, *out.ContentLength, c.MaxBytes)
	}
	body := bufio.NewReader(out.Body)
	head, _ := body.Peek(len(archiveMagic))
	name := SQLFile
	if string(head) == archiveMagic {
		name = ArchiveFile
	}
	f, err := os.OpenFile(filepath.Join(c.Dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", 0, err
	}
	var r io.Reader = body
	if c.MaxBytes > 0 {
		r = io.LimitReader(body, c.MaxBytes+1)
	}
	n, err := io.Copy(f, r)
	if err == nil && c.MaxBytes > 0 && n > c.MaxBytes {
		err = fmt.Errorf("parameters.seed.s3.key: s3://%s/%s has more than the %d bytes the seed's volume takes", c.Bucket, c.Key, c.MaxBytes)
	} else if err != nil {
		err = fmt.Errorf("parameters.seed.s3: reading s3://%s/%s: %w", c.Bucket, c.Key, err)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return name, n, err
}

// checkEndpoint refuses a plain-HTTP endpoint: the dump would cross the
// network readable (and changeable) by anyone on the path.
func checkEndpoint(c Config) error {
	if c.EndpointURL == "" {
		return nil
	}
	u, err := url.Parse(c.EndpointURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("parameters.seed.s3.endpoint: %q is not a URL such as https://s3.example.com", c.EndpointURL)
	}
	plainAllowed := c.AllowHTTP && u.Scheme == "http"
	if u.Scheme != "https" && !plainAllowed {
		return fmt.Errorf("parameters.seed.s3.endpoint: %q is not https://: the dump is fetched over TLS only", c.EndpointURL)
	}
	return nil
}

// Explain turns an S3 error into what to fix, naming the parameter.
func Explain(bucket, key string, err error) error {
	obj := "s3://" + bucket + "/" + key
	var api smithy.APIError
	code := ""
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("parameters.seed.s3.bucket: there is no bucket %s (S3 %s); check the bucket's name and region", bucket, code)
	case code == "NoSuchKey" || status == http.StatusNotFound:
		return fmt.Errorf("parameters.seed.s3.key: there is no object %s (S3 404 %s); upload the dump first (aws s3 cp dump.pgdump %s) or correct the key", obj, code, obj)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || status == http.StatusForbidden:
		return fmt.Errorf("parameters.seed.s3: reading %s was denied (S3 403 %s); the keys in credentials_secret (or the service account's IAM role) need s3:GetObject on it", obj, code)
	}
	var unknownCA x509.UnknownAuthorityError
	var badCert *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &badCert) {
		return fmt.Errorf("parameters.seed.s3.endpoint: reading %s failed: the endpoint's TLS certificate is not trusted (%s); "+
			"a store with a private CA needs its CA in the broker's postgres.seedCABundle (the platform team sets it)", obj, certReason(err))
	}
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("parameters.seed.s3: reading %s failed: %s", obj, msg)
}

// certReason is the TLS verification error's own words (x509: …).
func certReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "x509: "); i >= 0 {
		msg = msg[i:]
	}
	if i := strings.Index(msg, "\n"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}
