//go:build linux

package platform

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// There is no registry: every image is a one-layer docker-archive built
// here and imported into containerd, referred to as docker.io/local/NAME:TAG
// with imagePullPolicy Never or IfNotPresent.

// imageRef is the full reference of a local image.
func imageRef(name, tag string) string { return "docker.io/local/" + name + ":" + tag }

// imageConfig is the part of an OCI/Docker image config the platform sets.
type imageConfig struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"`
	User       string   `json:"User,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

// layerEntry is one file of a layer built from scratch.
type layerEntry struct {
	path     string // inside the image, without leading slash
	mode     int64
	uid, gid int
	dir      bool
	link     string // symlink target
	source   string // file to copy
	content  []byte // or literal content
}

// fixedTime makes layers byte-for-byte reproducible.
var fixedTime = time.Unix(0, 0)

// writeDockerArchive writes a one-layer docker-archive (what `docker save`
// produces and `ctr images import` reads): the layer tar, the config JSON
// and manifest.json naming the image by ref.
func writeDockerArchive(out, ref string, cfg imageConfig, writeLayer func(*tar.Writer) error) error {
	tmpLayer, err := os.CreateTemp(filepath.Dir(out), ".layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmpLayer.Name())
	defer tmpLayer.Close()
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(tmpLayer, h))
	if err := writeLayer(tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	diffID := "sha256:" + hex.EncodeToString(h.Sum(nil))
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      fixedTime.UTC().Format(time.RFC3339),
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{ref},
		"Layers":   []string{"layer.tar"},
	}})
	if err != nil {
		return err
	}

	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	aw := tar.NewWriter(f)
	size, err := tmpLayer.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := tmpLayer.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := aw.WriteHeader(&tar.Header{Name: "layer.tar", Mode: 0o644, Size: size, ModTime: fixedTime}); err != nil {
		return err
	}
	if _, err := io.Copy(aw, tmpLayer); err != nil {
		return err
	}
	for name, content := range map[string][]byte{configName: config, "manifest.json": manifest} {
		if err := aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: fixedTime}); err != nil {
			return err
		}
		if _, err := aw.Write(content); err != nil {
			return err
		}
	}
	if err := aw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// writeEntries writes files listed one by one into a layer.
func writeEntries(entries []layerEntry) func(*tar.Writer) error {
	return func(tw *tar.Writer) error {
		for _, e := range entries {
			hdr := &tar.Header{Name: e.path, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: fixedTime, Format: tar.FormatPAX}
			switch {
			case e.dir:
				hdr.Typeflag, hdr.Name = tar.TypeDir, e.path+"/"
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
			case e.link != "":
				hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
			case e.source != "":
				f, err := os.Open(e.source)
				if err != nil {
					return err
				}
				info, err := f.Stat()
				if err != nil {
					f.Close()
					return err
				}
				hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
				if err := tw.WriteHeader(hdr); err != nil {
					f.Close()
					return err
				}
				_, err = io.Copy(tw, f)
				f.Close()
				if err != nil {
					return err
				}
			default:
				hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.content))
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := tw.Write(e.content); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// writeTree writes a root filesystem directory into a layer, keeping
// owners, modes, symlinks and hard links; device nodes, sockets and pipes
// are left out (the runtime provides /dev).
func writeTree(root string) func(*tar.Writer) error {
	return func(tw *tar.Writer) error {
		seen := map[uint64]string{} // inode -> first path, for hard links
		return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, path)
			if err != nil || rel == "." {
				return err
			}
			info, err := os.Lstat(path)
			if err != nil {
				return err
			}
			st := info.Sys().(*syscall.Stat_t)
			link := ""
			if info.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(path); err != nil {
					return err
				}
			}
			if info.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeSocket|fs.ModeNamedPipe) != 0 {
				return nil
			}
			hdr, err := tar.FileInfoHeader(info, link)
			if err != nil {
				return err
			}
			hdr.Name = rel
			if info.IsDir() {
				hdr.Name += "/"
			}
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
			hdr.Uname, hdr.Gname = "", ""
			hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = fixedTime, time.Time{}, time.Time{}
			hdr.Format = tar.FormatPAX
			if info.Mode().IsRegular() && st.Nlink > 1 {
				if first, ok := seen[st.Ino]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
					return tw.WriteHeader(hdr)
				}
				seen[st.Ino] = rel
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if info.Mode().IsRegular() {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, f)
				f.Close()
				return err
			}
			return nil
		})
	}
}

// importImage imports an archive into every node's containerd (a pod may
// be scheduled on any node, and there is no registry to pull from).
func (p *Platform) importImage(ctx context.Context, archive string) error {
	for _, n := range p.nodes() {
		if err := importImageInto(ctx, n, archive); err != nil {
			return err
		}
	}
	return nil
}

// importImageInto imports an archive into a node's containerd's k8s.io
// namespace, where kubelet finds images.
func importImageInto(ctx context.Context, n nodeSpec, archive string) error {
	if err := run(ctx, "ctr", "--address", n.containerdSocket(), "-n", "k8s.io", "images", "import", archive); err != nil {
		return fmt.Errorf("platform: importing %s into %s: %w", filepath.Base(archive), n.name, err)
	}
	return nil
}

// hashStrings is a short content hash for cache keys.
func hashStrings(parts ...string) string {
	h := sha256.New()
	for _, s := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// hashFile is a file's sha256, for cache keys derived from built binaries.
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// baseEntries are the few files every from-scratch image needs: a passwd
// and group naming the non-root user, and a writable /tmp.
func baseEntries(uid int, user string) []layerEntry {
	return []layerEntry{
		{path: "etc", mode: 0o755, dir: true},
		{path: "etc/passwd", mode: 0o644, content: []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", user, uid, uid, user, user))},
		{path: "etc/group", mode: 0o644, content: []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\n", user, uid))},
		{path: "tmp", mode: 0o1777, dir: true},
		{path: "home", mode: 0o755, dir: true},
		{path: "home/" + user, mode: 0o700, uid: uid, gid: uid, dir: true},
	}
}

// tagOf extracts the tag from a reference.
func tagOf(ref string) string { return ref[strings.LastIndex(ref, ":")+1:] }
