package provisioners

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BackupConfig says where an engine's backups go: PostgreSQL's base
// backups and WAL (postgres.backup) and Redis's RDB snapshots
// (redis.backup) are configured alike. On AWS, credentials come from an
// IAM role on the pods' service account (IRSA) and no keys are stored; an
// S3-compatible store without IAM (CredentialsDir) gets static keys, which
// each instance holds in a Secret of its own namespace.
type BackupConfig struct {
	Bucket      string `json:"bucket"`
	PathPrefix  string `json:"pathPrefix"`
	Region      string `json:"region"`
	KMSKeyID    string `json:"kmsKeyId"`
	IAMRoleARN  string `json:"iamRoleArn"`
	EndpointURL string `json:"endpointURL"`
	// CredentialsDir holds the files accessKeyId and secretAccessKey, the
	// static keys of an S3-compatible store (the chart mounts
	// backupCredentials.existingSecret there); read at start-up into
	// Credentials. Empty: the pods' IAM role.
	CredentialsDir string `json:"credentialsDir"`
	// Credentials are the keys LoadCredentials read from CredentialsDir.
	Credentials *S3Keys `json:"-"`
}

// S3Keys are static S3 credentials.
type S3Keys struct {
	AccessKeyID, SecretAccessKey string
}

// The files of BackupConfig.CredentialsDir.
const (
	AccessKeyIDFile     = "accessKeyId"
	SecretAccessKeyFile = "secretAccessKey"
)

// LoadCredentials reads the static keys of CredentialsDir (nothing when it
// is empty); key is the configuration key errors name ("postgres.backup").
// The keys are read once: after rotating them, restart the broker.
func (b *BackupConfig) LoadCredentials(key string) error {
	if b.CredentialsDir == "" {
		return nil
	}
	if b.IAMRoleARN != "" {
		return fmt.Errorf("%s: iamRoleArn and credentialsDir exclude each other: the pods either assume the IAM role or use the static keys", key)
	}
	keys := &S3Keys{}
	for file, v := range map[string]*string{AccessKeyIDFile: &keys.AccessKeyID, SecretAccessKeyFile: &keys.SecretAccessKey} {
		raw, err := os.ReadFile(filepath.Join(b.CredentialsDir, file))
		if err != nil {
			return fmt.Errorf("%s.credentialsDir: %w", key, err)
		}
		if *v = strings.TrimSpace(string(raw)); *v == "" {
			return fmt.Errorf("%s.credentialsDir: %s is empty", key, filepath.Join(b.CredentialsDir, file))
		}
	}
	b.Credentials = keys
	return nil
}

// Path is the bucket path of a namespace's backups:
// s3://<bucket>/<prefix>/<namespace>, the prefix's slashes trimmed.
func (b BackupConfig) Path(namespace string) string {
	path := "s3://" + b.Bucket + "/"
	if pre := strings.Trim(b.PathPrefix, "/"); pre != "" {
		path += pre + "/"
	}
	return path + namespace
}
