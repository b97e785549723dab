package redis

import (
	"encoding/json"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/redis/snapshot"
)

func TestSnapshotJobNeedsAScheduleAndABucket(t *testing.T) {
	for _, tc := range []struct {
		plan   string
		config func() Config
		job    bool
	}{
		{plan: "dev-lite", config: staticKeysConfig, job: false},
		{plan: "standard", config: baseConfig, job: false},
		{plan: "ha", config: baseConfig, job: false},
		{plan: "standard", config: staticKeysConfig, job: true},
		{plan: "ha", config: iamRoleConfig, job: true},
	} {
		g := NewWithT(t)
		objs := build(t, tc.config(), testInstance(t, tc.plan, nil))
		g.Expect(byKind(objs, "CronJob")).To(HaveLen(map[bool]int{true: 1, false: 0}[tc.job]), tc.plan)
		g.Expect(named(byKind(objs, "ServiceAccount"), NamesOf(testInstance(t, tc.plan, nil)).SnapshotAccount)).To(HaveLen(map[bool]int{true: 1, false: 0}[tc.job]), tc.plan)
	}
}

func jobPod(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	pod, _, _ := unstructured.NestedMap(one(t, objs, "CronJob").Object, "spec", "jobTemplate", "spec", "template")
	return pod
}

func TestSnapshotJobIsScheduledAndLockedDown(t *testing.T) {
	for _, plan := range []string{"standard", "ha"} {
		g := NewWithT(t)
		inst := testInstance(t, plan, nil)
		objs := build(t, staticKeysConfig(), inst)
		job := one(t, objs, "CronJob")
		b := inst.Plan.Redis.Backup
		g.Expect(job.Object["spec"]).To(SatisfyAll(
			HaveKeyWithValue("schedule", b.Schedule),
			HaveKeyWithValue("timeZone", "Etc/UTC"),
			HaveKeyWithValue("concurrencyPolicy", "Forbid"),
		))
		pod := jobPod(t, objs)
		spec := pod["spec"].(map[string]any)
		g.Expect(spec["automountServiceAccountToken"]).To(BeFalse())
		g.Expect(spec["securityContext"]).To(HaveKeyWithValue("runAsNonRoot", true))
		accounts := named(byKind(objs, "ServiceAccount"), NamesOf(inst).SnapshotAccount)
		g.Expect(accounts).To(HaveLen(1), "the job runs as an account of its own, not the Redis pods' (the role agent's)")
		sa := accounts[0]
		g.Expect(sa.Object["automountServiceAccountToken"]).To(BeFalse())
		g.Expect(spec["serviceAccountName"]).To(Equal(sa.GetName()))
		c := spec["containers"].([]any)[0].(map[string]any)
		g.Expect(c["securityContext"]).To(HaveKeyWithValue("readOnlyRootFilesystem", true))
		g.Expect(c["resources"]).To(HaveKeyWithValue("limits", map[string]any{"cpu": b.CPU, "memory": b.Memory}))
		args := stringsOf(c["args"].([]any))
		v, _ := argValue(args, "--retention-days")
		g.Expect(v).To(Equal(map[string]string{"standard": "7", "ha": "30"}[plan]))
		v, _ = argValue(args, "--instance")
		g.Expect(v).To(Equal(testInstanceID), "the folder is the OSB id a restore names")
		v, _ = argValue(args, "--sentinel")
		g.Expect(v).To(Equal(NamesOf(inst).SentinelService + "." + testNamespace + ".svc:26379"))
	}
}

func stringsOf(v []any) []string {
	out := make([]string, len(v))
	for i, a := range v {
		out[i] = a.(string)
	}
	return out
}

// The job's pods are let through to Redis's plaintext port and the
// Sentinels, and only when there is a job.
func TestSnapshotJobIsAdmittedToRedisAndSentinel(t *testing.T) {
	g := NewWithT(t)
	objs := build(t, staticKeysConfig(), testInstance(t, "standard", nil))
	labels := jobPod(t, objs)["metadata"].(map[string]any)["labels"].(map[string]any)
	admitted := func(objs []*unstructured.Unstructured, port int64) bool {
		for _, pol := range byKind(objs, "NetworkPolicy") {
			rules, _, _ := unstructured.NestedSlice(pol.Object, "spec", "ingress")
			for _, r := range rules {
				rule := r.(map[string]any)
				sel, _ := rule["from"].([]any)[0].(map[string]any)["podSelector"].(map[string]any)
				match, _ := sel["matchLabels"].(map[string]any)
				if len(match) == 0 {
					continue
				}
				matches := true
				for k, v := range match {
					matches = matches && labels[k] == v
				}
				if matches && slices.ContainsFunc(rule["ports"].([]any), func(p any) bool { return p.(map[string]any)["port"] == port }) {
					return true
				}
			}
		}
		return false
	}
	g.Expect(admitted(objs, RedisPort)).To(BeTrue())
	g.Expect(admitted(objs, SentinelPort)).To(BeTrue())
	g.Expect(admitted(objs, TLSPort)).To(BeFalse())
	g.Expect(admitted(build(t, baseConfig(), testInstance(t, "standard", nil)), RedisPort)).To(BeFalse())
}

func TestRestoreParameterIsValidated(t *testing.T) {
	restore := func(r map[string]any) map[string]any { return map[string]any{"restore": r} }
	noImage := func() Config { c := staticKeysConfig(); c.SnapshotImage = ""; return c }
	for _, tc := range []struct {
		name   string
		config func() Config
		params map[string]any
		err    []string
	}{
		{name: "not a time", config: staticKeysConfig, params: restore(map[string]any{"from_instance": testSourceID, "snapshot": "yesterday"}),
			err: []string{"parameters.restore.snapshot", "RFC 3339"}},
		{name: "itself", config: staticKeysConfig, params: restore(map[string]any{"from_instance": testInstanceID}),
			err: []string{"parameters.restore.from_instance", "own id"}},
		{name: "no bucket", config: baseConfig, params: restore(map[string]any{"from_instance": testSourceID}),
			err: []string{"parameters.restore", "redis.backup.bucket"}},
		{name: "no image", config: noImage, params: restore(map[string]any{"from_instance": testSourceID}),
			err: []string{"redis.snapshotImage"}},
	} {
		g := NewWithT(t)
		_, err := (&Provisioner{Config: tc.config()}).Build(testInstance(t, "standard", tc.params))
		g.Expect(err).To(HaveOccurred(), tc.name)
		for _, e := range tc.err {
			g.Expect(err.Error()).To(ContainSubstring(e), tc.name)
		}
	}
}

func TestRestoreRendersInitContainersOnTheDataVolume(t *testing.T) {
	g := NewWithT(t)
	objs := build(t, iamRoleConfig(), testInstance(t, "standard", map[string]any{"restore": map[string]any{"from_instance": testSourceID}}))
	rf := one(t, objs, "RedisFailover")
	inits, _, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "initContainers")
	g.Expect(inits).To(HaveLen(2))
	fetch, load := inits[0].(map[string]any), inits[1].(map[string]any)
	args := stringsOf(fetch["args"].([]any))
	g.Expect(args[:2]).To(Equal([]string{"redis-snapshot", "restore-fetch"}))
	for flag, want := range map[string]string{"--from-instance": testSourceID, "--snapshot": "latest", "--data-dir": DataDir, "--namespace": testNamespace} {
		v, ok := argValue(args, flag)
		g.Expect(ok).To(BeTrue(), flag)
		g.Expect(v).To(Equal(want), flag)
	}
	g.Expect(fetch["image"]).To(Equal(testBrokerImage))
	g.Expect(load["image"]).To(Equal(DefaultConfig().RedisImage))
	for _, c := range []map[string]any{fetch, load} {
		g.Expect(c["volumeMounts"]).To(Equal([]any{map[string]any{"name": "redis-data", "mountPath": DataDir}}))
	}
	g.Expect(load["command"].([]any)[2]).To(ContainSubstring("CONFIG SET appendonly yes"))
	// The pods keep the role agent's account (its token labels the
	// master), which carries the IAM role the fetch step assumes.
	sa, _, _ := unstructured.NestedString(rf.Object, "spec", "redis", "serviceAccountName")
	roleAgent := NamesOf(testInstance(t, "standard", nil)).RoleAgent
	g.Expect(sa).To(Equal(roleAgent))
	g.Expect(named(byKind(objs, "ServiceAccount"), roleAgent)[0].GetAnnotations()).To(HaveKey("eks.amazonaws.com/role-arn"), "the fetch step assumes the IAM role")
	// No restore: no init containers.
	rf = one(t, build(t, iamRoleConfig(), testInstance(t, "standard", nil)), "RedisFailover")
	_, found, _ := unstructured.NestedSlice(rf.Object, "spec", "redis", "initContainers")
	g.Expect(found).To(BeFalse())
}

// The static keys and the password are only ever referenced from Secrets.
func TestNoSecretOutsideSecrets(t *testing.T) {
	g := NewWithT(t)
	cfg := staticKeysConfig()
	for _, params := range []map[string]any{nil, {"restore": map[string]any{"from_instance": testSourceID}}} {
		for _, o := range build(t, cfg, testInstance(t, "standard", params)) {
			if o.GetKind() == "Secret" {
				continue
			}
			raw, err := json.Marshal(o.Object)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(raw)).NotTo(ContainSubstring(cfg.Backup.Credentials.SecretAccessKey), o.GetKind())
			g.Expect(string(raw)).NotTo(ContainSubstring(cfg.Backup.Credentials.AccessKeyID), o.GetKind())
		}
	}
	g.Expect(snapshot.PasswordEnv).To(Equal("REDIS_PASSWORD"))
}

func TestSnapshotSecretHoldsTheStaticKeys(t *testing.T) {
	g := NewWithT(t)
	objs := build(t, staticKeysConfig(), testInstance(t, "standard", nil))
	s := one(t, objs, "Secret")
	g.Expect(s.Object["stringData"]).To(Equal(map[string]any{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMIexample"}))
	g.Expect(s.GetAnnotations()).NotTo(HaveKey(provisioners.AnnotationRetain), "a restore uses the new instance's own copy")
	g.Expect(byKind(build(t, iamRoleConfig(), testInstance(t, "standard", nil)), "Secret")).To(BeEmpty(), "no keys with an IAM role")
}

// named keeps the objects of that name.
func named(objs []*unstructured.Unstructured, name string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetName() == name {
			out = append(out, o)
		}
	}
	return out
}
