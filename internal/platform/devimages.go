//go:build linux

package platform

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The images of the Testcontainers module (integration/testcontainers,
// docs/spring-boot.md "Local development"): the platform's own PostgreSQL
// and Redis images, and a Kafka image built here from the same Debian Java
// runtime as the Spring Boot application's image and the Apache Kafka jars
// the Kafka tests run. They are docker-archives in the cache like every
// other image; LoadDevImages puts them into a Docker daemon under the
// stable names the module looks for by default.

// Stable names of the development images in a Docker daemon: the major
// versions of the plans, so a service's tests need not follow Debian's
// point releases.
const (
	DevPostgreSQLName = "strata/postgresql:" + PostgreSQLMajor
	DevRedisName      = "strata/redis:7.0"
	DevKafkaName      = "strata/kafka:4.3"
)

// DevImage is one image of the Testcontainers module.
type DevImage struct {
	// Ref is the reference inside the archive (docker.io/local/NAME:TAG),
	// Name the stable name LoadDevImages tags it with.
	Ref, Name string
	// Archive is the docker-archive in the cache.
	Archive string
}

// kafkaLog4j is the Kafka image's logging: warnings, and the line that
// says the server started (the module waits for it).
const kafkaLog4j = `rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
`

// BuildDevImages builds (or finds in the cache) the PostgreSQL, Redis and
// Kafka images of the Testcontainers module. kafkaJarDir holds the Apache
// Kafka jars (integration/kafkatest fetches them with Maven) and
// kafkaVersion is their version, the Kafka image's tag.
func (p *Platform) BuildDevImages(ctx context.Context, kafkaJarDir, kafkaVersion string) ([]DevImage, error) {
	// Other platforms' builds write into the same cache (lockCache).
	unlock, err := p.lockCache()
	if err != nil {
		return nil, err
	}
	defer unlock()
	pg, pgArchive, err := p.buildPostgreSQLImage(ctx)
	if err != nil {
		return nil, err
	}
	redis, _, redisArchives, err := p.buildRedisImages(ctx)
	if err != nil {
		return nil, err
	}
	kafka, kafkaArchive, err := p.buildKafkaImage(ctx, kafkaJarDir, kafkaVersion)
	if err != nil {
		return nil, err
	}
	return []DevImage{
		{Ref: pg, Name: DevPostgreSQLName, Archive: pgArchive},
		{Ref: redis, Name: DevRedisName, Archive: redisArchives[0]},
		{Ref: kafka, Name: DevKafkaName, Archive: kafkaArchive},
	}, nil
}

// buildKafkaImage packs the Kafka jars into the Debian Java 17 runtime of
// the Spring Boot application's image (springScript: the same packages,
// the same non-root user 65532), cached by the script, the logging
// configuration and the jars' contents.
func (p *Platform) buildKafkaImage(ctx context.Context, jarDir, version string) (string, string, error) {
	if !strings.HasPrefix(version, "4.3.") {
		return "", "", fmt.Errorf("platform: the Kafka image is tagged %s (strata/kafka:4.3): Kafka %s does not match", DevKafkaName, version)
	}
	jars, err := filepath.Glob(filepath.Join(jarDir, "*.jar"))
	if err != nil {
		return "", "", err
	}
	if len(jars) == 0 {
		return "", "", fmt.Errorf("platform: no Kafka jars in %s", jarDir)
	}
	sort.Strings(jars)
	parts := []string{springScript, kafkaLog4j, version}
	for _, j := range jars {
		h, err := hashFile(j)
		if err != nil {
			return "", "", err
		}
		parts = append(parts, filepath.Base(j), h)
	}
	key := hashStrings(parts...)
	ref := imageRef("kafka", version)
	archive := p.imageArchive("kafka", key)
	if fileExists(archive) {
		return ref, archive, nil
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", "", err
	}
	root := archive + ".rootfs"
	defer os.RemoveAll(root)
	start := time.Now()
	jre, err := p.debootstrapRootfs(ctx, "kafka-image", root, springScript)
	if err != nil {
		return "", "", err
	}
	libs := filepath.Join(root, "opt", "kafka", "libs")
	if err := os.MkdirAll(libs, 0o755); err != nil {
		return "", "", err
	}
	if err := run(ctx, "install", append([]string{"-m", "0644", "-t", libs}, jars...)...); err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Join(root, "opt", "kafka", "config"), 0o755); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(root, "opt", "kafka", "config", "log4j2.properties"), []byte(kafkaLog4j), 0o644); err != nil {
		return "", "", err
	}
	cfg := imageConfig{
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
		User:       "65532:65532",
		WorkingDir: "/app",
	}
	if err := writeDockerArchive(archive, ref, cfg, writeTree(root)); err != nil {
		return "", "", err
	}
	p.cfg.Log("platform: built %s (openjdk-17-jre-headless %s, %d jars) in %s", ref, jre, len(jars), time.Since(start).Round(time.Second))
	return ref, archive, nil
}

// LoadDevImages loads each image into the Docker daemon that the docker
// command (the Docker CLI, e.g. /usr/bin/docker) reaches with env (nil:
// this process's environment), unless the daemon already has the same
// image, and tags it with its stable name.
func LoadDevImages(ctx context.Context, docker string, env []string, imgs []DevImage) error {
	for _, img := range imgs {
		id, err := archiveImageID(img.Archive)
		if err != nil {
			return err
		}
		out, err := dockerCmd(ctx, docker, env, "image", "inspect", "--format", "{{.Id}}", img.Ref)
		if err != nil || strings.TrimSpace(out) != id {
			if out, err := dockerCmd(ctx, docker, env, "load", "-q", "-i", img.Archive); err != nil {
				return fmt.Errorf("platform: docker load -i %s: %w\n%s", img.Archive, err, out)
			}
		}
		if out, err := dockerCmd(ctx, docker, env, "tag", img.Ref, img.Name); err != nil {
			return fmt.Errorf("platform: docker tag %s %s: %w\n%s", img.Ref, img.Name, err, out)
		}
	}
	return nil
}

func dockerCmd(ctx context.Context, docker string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, docker, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// archiveImageID is the image id ("sha256:<config digest>") of a
// one-image docker-archive, from its manifest.json.
func archiveImageID(archive string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("platform: %s has no manifest.json", archive)
		}
		if err != nil {
			return "", fmt.Errorf("platform: reading %s: %w", archive, err)
		}
		if hdr.Name != "manifest.json" {
			continue
		}
		var m []struct{ Config string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			return "", fmt.Errorf("platform: %s: manifest.json: %w", archive, err)
		}
		if len(m) != 1 || !strings.HasSuffix(m[0].Config, ".json") {
			return "", fmt.Errorf("platform: %s: manifest.json names %d images", archive, len(m))
		}
		return "sha256:" + strings.TrimSuffix(m[0].Config, ".json"), nil
	}
}
