//go:build linux

package platform

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pgbouncerScript builds the PgBouncer image CloudNativePG runs for every
// Pooler (the operator's PGBOUNCER_IMAGE_NAME): Debian's pgbouncer, which
// the Pooler's bootstrap-controller joins with the operator's manager, and
// which that manager runs as /usr/bin/pgbouncer. Trixie's (1.24), not
// bookworm's (1.18): the broker's Poolers set max_prepared_statements,
// which PgBouncer has since 1.21. The apt sources are the machine's with
// the suite renamed.
const pgbouncerScript = `set -euo pipefail
root="$1" mirror="$2" sources="$3"
debootstrap --variant=minbase trixie "$root" "$mirror" >&2
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
case "$sources" in
  *.sources) sed 's/bookworm/trixie/g' "$sources" > "$root/etc/apt/sources.list.d/debian.sources" ;;
  *) sed 's/bookworm/trixie/g' "$sources" > "$root/etc/apt/sources.list" ;;
esac
chroot "$root" apt-get update -qq >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >&2
ln -sf /usr/sbin/pgbouncer "$root/usr/bin/pgbouncer"
chroot "$root" /usr/bin/pgbouncer --version >&2
chroot "$root" dpkg-query -W -f='${Version}' pgbouncer
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
  "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root"/var/cache/debconf/*-old "$root"/etc/pgbouncer/*
`

// buildPgBouncerImage builds the PgBouncer image, tagged with PgBouncer's
// version.
func (p *Platform) buildPgBouncerImage(ctx context.Context) (string, string, error) {
	archive := p.imageArchive("pgbouncer", hashStrings(pgbouncerScript))
	tagFile := archive + ".tag"
	if b, err := os.ReadFile(tagFile); err == nil && fileExists(archive) {
		return imageRef("pgbouncer", strings.TrimSpace(string(b))), archive, nil
	}
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return "", "", err
	}
	root := archive + ".rootfs"
	defer os.RemoveAll(root)
	start := time.Now()
	out, err := p.debootstrapRootfs(ctx, "pgbouncer", root, pgbouncerScript)
	if err != nil {
		return "", "", err
	}
	// "1.24.1-1+deb13u2" -> "1.24.1"
	tag := strings.SplitN(strings.TrimSpace(string(out)), "-", 2)[0]
	ref := imageRef("pgbouncer", tag)
	cfg := imageConfig{
		Entrypoint: []string{"/usr/bin/pgbouncer"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		// CloudNativePG runs the Pooler's pods as 998:996.
		User:       "998:996",
		WorkingDir: "/",
	}
	if err := writeDockerArchive(archive, ref, cfg, writeTree(root)); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(tagFile, []byte(tag+"\n"), 0o644); err != nil {
		return "", "", err
	}
	p.cfg.Log("platform: built %s in %s", ref, time.Since(start).Round(time.Second))
	return ref, archive, nil
}
