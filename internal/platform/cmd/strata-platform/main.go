//go:build linux

// Command strata-platform drives internal/platform from the shell:
//
//	strata-platform build           build (or find cached) the binaries and images
//	strata-platform up [-cnpg]      start the platform (and CloudNativePG), print the kubeconfig
//	strata-platform up -redis       also the redis-operator (combine with -broker for Redis through the broker)
//	strata-platform up -broker      also CloudNativePG and the broker (its Helm chart), print a curl
//	strata-platform down [-purge]   stop it and undo every host change
//	strata-platform dev-images      build (or find cached) the PostgreSQL, Redis and Kafka
//	                                images of the Testcontainers module and load them into
//	                                the Docker daemon `docker` reaches (DOCKER_HOST), as
//	                                strata/postgresql:15, strata/redis:7.0, strata/kafka:4.3
//	strata-platform run             `make run`: install what is missing, up -broker, then
//	                                provision, bind and connect to a dev-lite PostgreSQL
//	                                and print how to use it (or fall back to the API-only
//	                                embedded broker where the platform cannot run)
//
// `make test` runs `build` first so that a cold machine pays the builds
// outside the tests' timeout.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/strata-dev/strata/integration/kafkatest"
	"github.com/strata-dev/strata/internal/platform"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: strata-platform build|up|down|run|dev-images [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	repo := fs.String("repo", ".", "the Strata repository")
	state := fs.String("state", "", "state directory (default <repo>/.cache/platform/dev)")
	cnpg := fs.Bool("cnpg", false, "up: also install the CloudNativePG operator")
	withRedis := fs.Bool("redis", false, "up: also install the redis-operator (with -broker, the broker then provisions Redis too)")
	withBroker := fs.Bool("broker", false, "up: also install CloudNativePG and the broker built from cmd/strata-broker, and print how to call it")
	purge := fs.Bool("purge", false, "down: also remove the state directory")
	fs.Parse(os.Args[2:]) //nolint:errcheck // ExitOnError
	if *state == "" {
		*state = filepath.Join(*repo, ".cache", "platform", "dev")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if cmd == "run" {
		// Before platform.New: a machine that cannot run the platform
		// falls back instead.
		if err := run(ctx, *repo, *state); err != nil {
			log.Fatal(err)
		}
		return
	}
	p, err := platform.New(platform.Config{
		StateDir:  *state,
		CacheDir:  filepath.Join(*repo, ".cache", "platform"),
		SourceDir: *repo,
		Log:       log.Printf,
	})
	if err != nil {
		log.Fatal(err)
	}
	switch cmd {
	case "build":
		err = p.Build(ctx)
	case "up":
		if err = p.Start(ctx); err == nil && (*cnpg || *withBroker) {
			err = p.InstallCertManager(ctx)
		}
		if err == nil && (*cnpg || *withBroker) {
			err = p.InstallCNPG(ctx)
		}
		if err == nil && *withRedis {
			err = p.InstallRedisOperator(ctx)
		}
		if err == nil {
			fmt.Printf("platform up; logs in %s\nexport KUBECONFIG=%s\n", p.LogDir(), p.Kubeconfig())
		}
		if err == nil && *withBroker {
			err = upBroker(ctx, p, *state)
		}
	case "dev-images":
		err = devImages(ctx, p)
	case "down":
		if err = p.Stop(ctx); err == nil && *purge {
			err = p.Purge()
		}
	default:
		err = fmt.Errorf("unknown command %q (build, up, down, run or dev-images)", cmd)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// devImages builds the Testcontainers module's images (the Kafka jars are
// fetched with Maven first, as the Kafka tests fetch them) and loads them
// into the Docker daemon of the docker command on PATH.
func devImages(ctx context.Context, p *platform.Platform) error {
	if _, err := kafkatest.EnsureJars(); err != nil {
		return err
	}
	imgs, err := p.BuildDevImages(ctx, kafkatest.JarDir(), kafkatest.KafkaVersion)
	if err != nil {
		return err
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		return fmt.Errorf("docker is not on PATH (%w): install Docker (Debian: apt-get install docker.io) and start dockerd", err)
	}
	if err := platform.LoadDevImages(ctx, docker, nil, imgs); err != nil {
		return err
	}
	for _, img := range imgs {
		fmt.Printf("%s (%s, %s)\n", img.Name, img.Ref, img.Archive)
	}
	return nil
}

// upBroker installs the broker (or upgrades it to the current code), keeps
// its credentials and CA in <state>/strata (the files `run` uses), and
// prints a curl sequence.
func upBroker(ctx context.Context, p *platform.Platform, state string) error {
	dir := filepath.Join(state, "strata")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	passwordFile := filepath.Join(dir, "broker-password")
	password, err := os.ReadFile(passwordFile)
	if err != nil {
		secret := make([]byte, 24)
		if _, err := rand.Read(secret); err != nil {
			return err
		}
		password = []byte(hex.EncodeToString(secret))
		if err := os.WriteFile(passwordFile, password, 0o600); err != nil {
			return err
		}
	}
	image, err := p.BuildBrokerImage(ctx)
	if err != nil {
		return err
	}
	b, err := p.InstallBroker(ctx, platform.BrokerInstall{Namespace: "strata-system", Image: image, Password: string(password)})
	if err != nil {
		return err
	}
	caFile := filepath.Join(dir, "broker-ca.crt")
	if err := os.WriteFile(caFile, b.CAPEM, 0o600); err != nil {
		return err
	}
	host := strings.TrimPrefix(b.URL, "https://")
	fmt.Printf(`broker %s (image %s), user strata, password in %s, CA in %s
# The host routes the Service range into the platform; curl resolves the name with --resolve.
curl --resolve %s:443:%s --cacert %s -u "strata:$(cat %s)" -H 'X-Broker-API-Version: 2.17' %s/v2/catalog
`, b.URL, image, passwordFile, caFile, host, b.ServiceIP, caFile, passwordFile, b.URL)
	return nil
}
