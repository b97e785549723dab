package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/strata-dev/strata/provisioners"
)

// TimeFormat names a snapshot's object: its UTC time, sortable as text.
const TimeFormat = "20060102T150405Z"

// Ext is the objects' extension.
const Ext = ".rdb"

// DefaultPartSize is the part size of uploads larger than it (S3 takes at
// most 5 GiB in one PUT; 10,000 parts of 256 MiB are 2.5 TiB).
const DefaultPartSize = 256 << 20

// StoreConfig is where snapshots go: the broker's redis.backup.
type StoreConfig struct {
	Bucket, Prefix, EndpointURL, Region, KMSKeyID string
}

// Store is the S3 side. Credentials come from the SDK's default chain:
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the instance's Secret
// (static keys), or the web identity token of an IAM role for service
// accounts.
type Store struct {
	Client *s3.Client
	StoreConfig
	// PartSize is the multipart threshold and part size (0: DefaultPartSize).
	PartSize int64
}

// NewStore builds the client; keys, when not nil, are static keys (the
// broker's), else the SDK's default chain finds credentials.
func NewStore(ctx context.Context, c StoreConfig, keys *provisioners.S3Keys) (*Store, error) {
	if c.Bucket == "" {
		return nil, errors.New("no bucket: set redis.backup.bucket in the broker configuration")
	}
	opts := []func(*awsconfig.LoadOptions) error{}
	if c.Region != "" {
		opts = append(opts, awsconfig.WithRegion(c.Region))
	} else {
		opts = append(opts, awsconfig.WithRegion("us-east-1"))
	}
	if keys != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(keys.AccessKeyID, keys.SecretAccessKey, "")))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if c.EndpointURL != "" {
			// S3-compatible stores (MinIO, versitygw) serve buckets as paths.
			o.BaseEndpoint = aws.String(c.EndpointURL)
			o.UsePathStyle = true
		}
	})
	return &Store{Client: client, StoreConfig: c}, nil
}

// Dir is the folder of an instance's snapshots:
// <prefix>/<namespace>/redis/<instance>/ (no bucket), the layout of the
// PostgreSQL backups (<prefix>/<namespace>/<cluster>) with an engine level.
func (s *Store) Dir(namespace, instance string) string {
	parts := []string{}
	if p := strings.Trim(s.Prefix, "/"); p != "" {
		parts = append(parts, p)
	}
	return path.Join(append(parts, namespace, "redis", instance)...) + "/"
}

// Key is the object of a snapshot taken at t.
func (s *Store) Key(namespace, instance string, t time.Time) string {
	return s.Dir(namespace, instance) + t.UTC().Format(TimeFormat) + Ext
}

// Object is one stored snapshot.
type Object struct {
	Key  string
	Time time.Time
	Size int64
}

// List returns an instance's snapshots, oldest first. Objects whose names
// are not snapshot times are ignored (and never deleted).
func (s *Store) List(ctx context.Context, namespace, instance string) ([]Object, error) {
	dir := s.Dir(namespace, instance)
	var out []Object
	pages := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(dir)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, dir, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			name := strings.TrimPrefix(key, dir)
			if !strings.HasSuffix(name, Ext) || strings.Contains(name, "/") {
				continue
			}
			t, err := time.Parse(TimeFormat, strings.TrimSuffix(name, Ext))
			if err != nil {
				continue
			}
			out = append(out, Object{Key: key, Time: t, Size: aws.ToInt64(o.Size)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// Upload stores the file at key with server-side encryption: aws:kms (with
// the configured key, else the bucket's default one), as the PostgreSQL
// backups are written.
func (s *Store) Upload(ctx context.Context, key, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	part := s.PartSize
	if part <= 0 {
		part = DefaultPartSize
	}
	if st.Size() <= part {
		in := &s3.PutObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(st.Size())}
		s.encrypt(&in.ServerSideEncryption, &in.SSEKMSKeyId)
		_, err = s.Client.PutObject(ctx, in)
		return err
	}
	return s.uploadParts(ctx, key, f, st.Size(), part)
}

func (s *Store) encrypt(sse *types.ServerSideEncryption, kms **string) {
	*sse = types.ServerSideEncryptionAwsKms
	if s.KMSKeyID != "" {
		*kms = aws.String(s.KMSKeyID)
	}
}

// uploadParts is a multipart upload, aborted on any error so that no
// unfinished parts stay billed in the bucket.
func (s *Store) uploadParts(ctx context.Context, key string, f *os.File, size, part int64) (err error) {
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)}
	s.encrypt(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	mp, err := s.Client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_, _ = s.Client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(s.Bucket), Key: aws.String(key), UploadId: mp.UploadId})
		}
	}()
	var parts []types.CompletedPart
	for n, off := int32(1), int64(0); off < size; n, off = n+1, off+part {
		length := min(part, size-off)
		out, err := s.Client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s.Bucket), Key: aws.String(key), UploadId: mp.UploadId, PartNumber: aws.Int32(n),
			Body: io.NewSectionReader(f, off, length), ContentLength: aws.Int64(length),
		})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", n, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	_, err = s.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.Bucket), Key: aws.String(key), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	return err
}

// Expired are the snapshots older than retention at now, never the newest
// one: an instance whose job has failed for longer than the retention
// still has something to restore.
func Expired(objs []Object, retention time.Duration, now time.Time) []Object {
	var out []Object
	for i, o := range objs {
		if i == len(objs)-1 {
			break
		}
		if now.Sub(o.Time) > retention {
			out = append(out, o)
		}
	}
	return out
}

// Delete removes one object.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	return err
}

// Choose picks the snapshot a restore asks for: "latest" (or "") the newest,
// else an RFC 3339 time, the newest taken at or before it.
func Choose(objs []Object, which string) (Object, error) {
	if len(objs) == 0 {
		return Object{}, errors.New("there is no snapshot")
	}
	if which == "" || which == "latest" {
		return objs[len(objs)-1], nil
	}
	at, err := time.Parse(time.RFC3339, which)
	if err != nil {
		return Object{}, fmt.Errorf("%q is neither \"latest\" nor an RFC 3339 time (e.g. 2026-05-01T12:00:00Z)", which)
	}
	for i := len(objs) - 1; i >= 0; i-- {
		if !objs[i].Time.After(at) {
			return objs[i], nil
		}
	}
	return Object{}, fmt.Errorf("the oldest snapshot is from %s, after %s", objs[0].Time.Format(time.RFC3339), at.Format(time.RFC3339))
}

// Download writes the object at key to file.
func (s *Store) Download(ctx context.Context, key, file string) error {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("get s3://%s/%s: %w", s.Bucket, key, err)
	}
	defer out.Body.Close()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, out.Body); err != nil {
		f.Close()
		return fmt.Errorf("get s3://%s/%s: %w", s.Bucket, key, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
