package binding

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-dev/strata/provisioners"
)

// DefaultKVMount is the path of the KV version 2 secrets engine Strata
// keeps instance secrets in (OpenBao's dev server mounts one there).
const DefaultKVMount = "secret"

// KVPath is where an instance's secrets live in the KV engine:
// strata/<namespace>/<instance name>. The policy confines the broker to
// strata/.
func KVPath(inst provisioners.Instance) string {
	return "strata/" + inst.Namespace + "/" + inst.Name
}

func kvMount(mount string) string {
	if mount == "" {
		return DefaultKVMount
	}
	return strings.Trim(mount, "/")
}

// KVPut writes data as a new version of the KV v2 secret at path.
func (s *OpenBaoSource) KVPut(ctx context.Context, mount, path string, data map[string]any) error {
	vc, err := s.client(ctx)
	if err != nil {
		return err
	}
	if _, err := vc.KVv2(kvMount(mount)).Put(ctx, path, data); err != nil {
		return fmt.Errorf("write OpenBao secret %s/%s: %w", kvMount(mount), path, err)
	}
	return nil
}

// KVGet reads the current version of the KV v2 secret at path; nil when
// there is none (never written, or deleted).
func (s *OpenBaoSource) KVGet(ctx context.Context, mount, path string) (map[string]any, error) {
	vc, err := s.client(ctx)
	if err != nil {
		return nil, err
	}
	// A raw read: the KVv2 helper turns "no secret" and a deleted current
	// version into errors that are hard to tell from a failure.
	sec, err := vc.Logical().ReadWithContext(ctx, kvMount(mount)+"/data/"+path)
	if err != nil {
		return nil, fmt.Errorf("read OpenBao secret %s/%s: %w", kvMount(mount), path, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil
	}
	data, _ := sec.Data["data"].(map[string]any)
	return data, nil
}

// KVDelete removes the KV v2 secret at path with all its versions;
// deleting a secret that is not there succeeds.
func (s *OpenBaoSource) KVDelete(ctx context.Context, mount, path string) error {
	vc, err := s.client(ctx)
	if err != nil {
		return err
	}
	if err := vc.KVv2(kvMount(mount)).DeleteMetadata(ctx, path); err != nil {
		return fmt.Errorf("delete OpenBao secret %s/%s: %w", kvMount(mount), path, err)
	}
	return nil
}
