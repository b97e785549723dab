//go:build linux

package platform

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The platform's S3: versitygw (the Go module at the version the module
// proxy serves) with its posix backend on a volume, the stand-in for AWS
// S3 that the backups of the standard and ha plans go to.
const (
	VersityGWVersion = "1.8.0"
	versityGWModule  = "github.com/versity/versitygw"
	// S3Namespace, S3Service and S3Port are where versitygw serves.
	S3Namespace = "strata-s3"
	S3Service   = "versitygw"
	S3Port      = 7070
	// S3TLSPort is where a second versitygw process serves the same
	// buckets over TLS, with a certificate of the platform CA: the
	// production path of clients that refuse plain HTTP (a seed from S3).
	S3TLSPort = 7443
	// S3Region is versitygw's default region (the one it signs for).
	S3Region      = "us-east-1"
	s3KeysSecret  = "versitygw-root"
	s3TLSSecret   = "versitygw-tls"
	s3DataClaim   = "versitygw-data"
	s3AccessKey   = "ROOT_ACCESS_KEY_ID"
	s3SecretKey   = "ROOT_SECRET_ACCESS_KEY"
	versityGWUser = 26 // the pre-created volumes belong to 26:26
)

// buildVersityGWImage builds versitygw from its module.
func (p *Platform) buildVersityGWImage(ctx context.Context) (string, string, error) {
	dir, err := moduleDir(ctx, versityGWModule, "v"+VersityGWVersion)
	if err != nil {
		return "", "", err
	}
	bin, err := p.buildModuleBinary(ctx, goBuild{
		name:      "versitygw",
		moduleDir: dir,
		pkg:       "./cmd/versitygw",
		ldflags:   "-X main.Version=v" + VersityGWVersion,
	})
	if err != nil {
		return "", "", err
	}
	return p.binaryImage("versitygw", VersityGWVersion, bin, []layerEntry{
		{path: "versitygw", mode: 0o755, source: bin},
	}, imageConfig{Entrypoint: []string{"/versitygw"}, User: fmt.Sprintf("%d:%d", versityGWUser, versityGWUser)})
}

// S3 is the platform's S3 endpoint and its root keys.
type S3 struct {
	// EndpointURL is what pods use:
	// http://versitygw.strata-s3.svc.cluster.local:7070 (plain HTTP
	// inside the node; nothing leaves it).
	EndpointURL string
	// TLSEndpointURL is the same store over TLS:
	// https://versitygw.strata-s3.svc.cluster.local:7443, its certificate
	// signed by the platform CA (CAPEM).
	TLSEndpointURL string
	// CAPEM is the platform CA's certificate, which TLSEndpointURL's
	// certificate chains to.
	CAPEM []byte
	// ServiceIP is the Service's address, which the host routes to.
	ServiceIP string
	Region    string
	// AccessKeyID and SecretAccessKey are versitygw's root keys (random,
	// kept in the Secret versitygw-root of S3Namespace).
	AccessKeyID, SecretAccessKey string
}

// InstallS3 runs versitygw as a Deployment in S3Namespace with its posix
// backend on a PersistentVolume (the backups survive its restarts), root
// keys from a Secret (generated once, then reused), and a Service on port
// 7070, and waits until it serves. Buckets are created by their users
// (barman-cloud creates its bucket at the first WAL it archives).
func (p *Platform) InstallS3(ctx context.Context) (*S3, error) {
	imgs, err := p.BuildImages(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.importIfMissing(ctx, imgs.VersityGW); err != nil {
		return nil, err
	}
	start := time.Now()
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: S3Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	keys, err := p.Client.CoreV1().Secrets(S3Namespace).Get(ctx, s3KeysSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// Access key ids are upper-case alphanumerics in AWS; versitygw
		// takes anything, the tools expect something that looks like one.
		access, err := randomToken(10)
		if err != nil {
			return nil, err
		}
		secret, err := randomToken(20)
		if err != nil {
			return nil, err
		}
		keys = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s3KeysSecret, Namespace: S3Namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{s3AccessKey: []byte("STRATA" + access), s3SecretKey: []byte(secret)},
		}
		if keys, err = p.Client.CoreV1().Secrets(S3Namespace).Create(ctx, keys, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	// The TLS listener's certificate, issued once by the platform CA for
	// the Service's names.
	host := fmt.Sprintf("%s.%s.svc", S3Service, S3Namespace)
	if _, err := p.Client.CoreV1().Secrets(S3Namespace).Get(ctx, s3TLSSecret, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		certPEM, keyPEM, err := p.issueServing([]string{host + ".cluster.local", host, S3Service + "." + S3Namespace})
		if err != nil {
			return nil, err
		}
		if _, err := p.Client.CoreV1().Secrets(S3Namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s3TLSSecret, Namespace: S3Namespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
		}, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(p.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: %[3]s
  resources: {requests: {storage: 5Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[4]s, namespace: %[1]s, labels: {app: %[4]s}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: %[4]s}}
  template:
    metadata: {labels: {app: %[4]s}}
    spec:
      enableServiceLinks: false
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: %[5]d
        runAsGroup: %[5]d
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: versitygw
        image: %[6]s
        imagePullPolicy: IfNotPresent
        args: [posix, /data]
        env:
        - {name: VGW_PORT, value: ":%[7]d"}
        - {name: VGW_REGION, value: %[8]s}
        - {name: VGW_HEALTH, value: /health}
        - {name: VGW_QUIET, value: "true"}
        - name: ROOT_ACCESS_KEY_ID
          valueFrom: {secretKeyRef: {name: %[9]s, key: %[10]s}}
        - name: ROOT_SECRET_ACCESS_KEY
          valueFrom: {secretKeyRef: {name: %[9]s, key: %[11]s}}
        ports: [{name: s3, containerPort: %[7]d}]
        readinessProbe:
          httpGet: {path: /health, port: %[7]d}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: %[7]d}
          periodSeconds: 10
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {memory: 512Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: data, mountPath: /data}]
      # The same buckets over TLS: versitygw serves one listener per
      # process, and its posix backend is files on the shared volume.
      - name: versitygw-tls
        image: %[6]s
        imagePullPolicy: IfNotPresent
        args: [posix, /data]
        env:
        - {name: VGW_PORT, value: ":%[12]d"}
        - {name: VGW_CERT, value: /tls/tls.crt}
        - {name: VGW_KEY, value: /tls/tls.key}
        - {name: VGW_REGION, value: %[8]s}
        - {name: VGW_HEALTH, value: /health}
        - {name: VGW_QUIET, value: "true"}
        - name: ROOT_ACCESS_KEY_ID
          valueFrom: {secretKeyRef: {name: %[9]s, key: %[10]s}}
        - name: ROOT_SECRET_ACCESS_KEY
          valueFrom: {secretKeyRef: {name: %[9]s, key: %[11]s}}
        ports: [{name: s3-tls, containerPort: %[12]d}]
        readinessProbe:
          httpGet: {path: /health, port: %[12]d, scheme: HTTPS}
          periodSeconds: 2
        resources:
          requests: {cpu: 20m, memory: 32Mi}
          limits: {memory: 256Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: data, mountPath: /data}, {name: tls, mountPath: /tls, readOnly: true}]
      volumes:
      - {name: data, persistentVolumeClaim: {claimName: %[2]s}}
      - {name: tls, secret: {secretName: %[13]s}}
---
apiVersion: v1
kind: Service
metadata: {name: %[4]s, namespace: %[1]s, labels: {app: %[4]s}}
spec:
  selector: {app: %[4]s}
  ports: [{name: s3, port: %[7]d, targetPort: %[7]d}, {name: s3-tls, port: %[12]d, targetPort: %[12]d}]
`, S3Namespace, s3DataClaim, StorageClass, S3Service, versityGWUser, imgs.VersityGW, S3Port, S3Region, s3KeysSecret, s3AccessKey, s3SecretKey, S3TLSPort, s3TLSSecret)
	if err := p.Apply(ctx, []byte(manifest)); err != nil {
		return nil, err
	}
	if err := p.WaitForDeployment(ctx, S3Namespace, S3Service, 3*time.Minute); err != nil {
		return nil, err
	}
	svc, err := p.Client.CoreV1().Services(S3Namespace).Get(ctx, S3Service, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	p.cfg.Log("platform: versitygw %s (S3) serving in %s", VersityGWVersion, time.Since(start).Round(time.Second))
	return &S3{
		EndpointURL:     fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", S3Service, S3Namespace, S3Port),
		TLSEndpointURL:  fmt.Sprintf("https://%s.cluster.local:%d", host, S3TLSPort),
		CAPEM:           caPEM,
		ServiceIP:       svc.Spec.ClusterIP,
		Region:          S3Region,
		AccessKeyID:     string(keys.Data[s3AccessKey]),
		SecretAccessKey: string(keys.Data[s3SecretKey]),
	}, nil
}

// randomToken is n random bytes as upper-case base32-like alphanumerics.
func randomToken(n int) (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}

// BackupBucket is the bucket the broker's backups go to on the platform
// (barman-cloud creates it).
const BackupBucket = "strata-backups"

// backupKeysSecret is the broker's Secret with the S3 keys (the chart's
// backupCredentials.existingSecret).
const backupKeysSecret = "strata-backup-s3"

// BrokerBackupValues configures the broker's backups for the platform's
// S3, as a platform team would for an S3-compatible store: versitygw's
// keys in a Secret of the broker's namespace, mounted by the chart
// (backupCredentials.existingSecret), and config.postgres.backup naming the
// bucket, the endpoint and the region. Pass the result as
// BrokerInstall.Values.
func (p *Platform) BrokerBackupValues(ctx context.Context, s3 *S3, namespace string) (map[string]any, error) {
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: backupKeysSecret, Namespace: namespace},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"ACCESS_KEY_ID": []byte(s3.AccessKeyID), "ACCESS_SECRET_KEY": []byte(s3.SecretAccessKey)},
	}
	if _, err := p.Client.CoreV1().Secrets(namespace).Create(ctx, secret, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		if _, err := p.Client.CoreV1().Secrets(namespace).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return map[string]any{
		"backupCredentials": map[string]any{"existingSecret": backupKeysSecret},
		"config": map[string]any{"postgres": map[string]any{"backup": map[string]any{
			"bucket":      BackupBucket,
			"endpointURL": s3.EndpointURL,
			"region":      s3.Region,
		}}},
	}, nil
}
