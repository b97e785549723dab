package postgres

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/strata-dev/strata/provisioners"
	"github.com/strata-dev/strata/provisioners/internal/provtest"
	"github.com/strata-dev/strata/provisioners/postgres/seedfetch"
)

func s3SeedJob() S3SeedJob {
	return S3SeedJob{
		Source:      S3Seed{Bucket: "orders-dumps", Key: "prod/2026-12-01.pgdump", Region: "eu-central-1", CredentialsSecret: "orders-s3"},
		FetchImage:  "registry.example/strata-broker:1.0",
		LoginSecret: "pg-seed-login",
	}
}

// The Job's rendering, reviewed once and kept (go test -run
// TestS3SeedJobGolden -update rewrites it).
func TestS3SeedJobGolden(t *testing.T) {
	g := NewWithT(t)
	inst := testInstance(t, "dev-lite", nil)
	job, err := (&Provisioner{Config: DefaultConfig()}).S3SeedJob(inst, s3SeedJob())
	g.Expect(err).NotTo(HaveOccurred())
	got, err := provtest.RenderYAML([]*unstructured.Unstructured{job})
	g.Expect(err).NotTo(HaveOccurred())
	provtest.ExpectGolden(g, "dev-lite-seed-s3-job", got)
}

func TestS3SeedJob(t *testing.T) {
	p := &Provisioner{Config: DefaultConfig()}
	tests := []struct {
		name   string
		change func(j *S3SeedJob)
		check  func(g Gomega, job *unstructured.Unstructured)
		err    string
	}{
		{name: "restricted pod security, bounded, once", check: func(g Gomega, job *unstructured.Unstructured) {
			g.Expect(nestedMap(t, job, "spec")).To(HaveKeyWithValue("backoffLimit", int64(0)))
			g.Expect(nestedMap(t, job, "spec")).To(HaveKeyWithValue("activeDeadlineSeconds", int64(DefaultS3SeedDeadline)))
			pod := nestedMap(t, job, "spec", "template", "spec")
			g.Expect(pod).To(HaveKeyWithValue("automountServiceAccountToken", false))
			g.Expect(pod["securityContext"]).To(HaveKeyWithValue("runAsNonRoot", true))
			g.Expect(pod["securityContext"]).To(HaveKeyWithValue("seccompProfile", map[string]any{"type": "RuntimeDefault"}))
			for _, c := range append(nestedSlice(t, job, "spec", "template", "spec", "initContainers"), nestedSlice(t, job, "spec", "template", "spec", "containers")...) {
				c := c.(map[string]any)
				g.Expect(c["securityContext"]).To(Equal(restrictedContainer()), c["name"])
				g.Expect(c["resources"]).To(HaveKey("limits"), c["name"])
				g.Expect(c).To(HaveKeyWithValue("terminationMessagePolicy", "File"))
			}
		}},
		{name: "TLS verify-full to the instance's rw Service, as the login", check: func(g Gomega, job *unstructured.Unstructured) {
			env := envOf(t, job, "containers")
			g.Expect(env).To(HaveKeyWithValue("PGSSLMODE", "verify-full"))
			g.Expect(env).To(HaveKeyWithValue("PGHOST", "pg-"+testInstance(t, "dev-lite", nil).ID+"-rw."+testNamespace+".svc"))
			g.Expect(env).To(HaveKeyWithValue("PGUSER", "secret pg-seed-login/username"))
			g.Expect(env).To(HaveKeyWithValue("PGPASSWORD", "secret pg-seed-login/password"))
			g.Expect(env).To(HaveKeyWithValue("PGDATABASE", "app"))
		}},
		{name: "tenant keys from its Secret, never the node's role", check: func(g Gomega, job *unstructured.Unstructured) {
			env := envOf(t, job, "initContainers")
			g.Expect(env).To(HaveKeyWithValue("AWS_EC2_METADATA_DISABLED", "true"))
			g.Expect(env).To(HaveKeyWithValue("AWS_ACCESS_KEY_ID", "secret orders-s3/AWS_ACCESS_KEY_ID"))
			g.Expect(env).To(HaveKeyWithValue("AWS_SECRET_ACCESS_KEY", "secret orders-s3/AWS_SECRET_ACCESS_KEY"))
			args := nestedSlice(t, job, "spec", "template", "spec", "initContainers")[0].(map[string]any)["args"]
			g.Expect(args).To(ContainElements("postgres-seed-fetch", "orders-dumps", "prod/2026-12-01.pgdump", "eu-central-1", "10737418240"))
			g.Expect(args).NotTo(ContainElement("--endpoint-url"))
		}},
		{name: "IRSA: a service account instead of keys", change: func(j *S3SeedJob) {
			j.Source.CredentialsSecret, j.Source.ServiceAccount, j.Source.Endpoint = "", "orders-seeder", "https://s3.example.net"
		}, check: func(g Gomega, job *unstructured.Unstructured) {
			g.Expect(nestedString(t, job, "spec", "template", "spec", "serviceAccountName")).To(Equal("orders-seeder"))
			g.Expect(envOf(t, job, "initContainers")).NotTo(HaveKey("AWS_ACCESS_KEY_ID"))
			args := nestedSlice(t, job, "spec", "template", "spec", "initContainers")[0].(map[string]any)["args"]
			g.Expect(args).To(ContainElements("--endpoint-url", "https://s3.example.net"))
		}},
		{name: "no fetch image", change: func(j *S3SeedJob) { j.FetchImage = "" }, err: "postgres.seedImage"},
		{name: "a private CA for the fetch to trust", change: func(j *S3SeedJob) { j.CABundle = "-----BEGIN CERTIFICATE-----\n" },
			check: func(g Gomega, job *unstructured.Unstructured) {
				g.Expect(envOf(t, job, "initContainers")).To(HaveKeyWithValue(seedfetch.CABundleEnv, "-----BEGIN CERTIFICATE-----\n"))
			}},
		{name: "no CA bundle: none set", check: func(g Gomega, job *unstructured.Unstructured) {
			g.Expect(envOf(t, job, "initContainers")).NotTo(HaveKey(seedfetch.CABundleEnv))
		}},
		{name: "no login", change: func(j *S3SeedJob) { j.LoginSecret = "" }, err: "login Secret"},
		{name: "bad volume size", change: func(j *S3SeedJob) { j.DumpLimit = "ten" }, err: `size "ten"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			j := s3SeedJob()
			if tc.change != nil {
				tc.change(&j)
			}
			job, err := p.S3SeedJob(testInstance(t, "dev-lite", nil), j)
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(job.GetName()).To(Equal(S3SeedJobName(testInstance(t, "dev-lite", nil))))
			tc.check(g, job)
		})
	}
}

// The restore summary keeps PostgreSQL's DETAIL and CONTEXT lines (where
// it puts row values) and quoted input values out of the termination
// message.
func TestS3SeedRestoreScriptSummary(t *testing.T) {
	g := NewWithT(t)
	script := S3SeedRestoreScript()
	for _, want := range []string{"--no-owner", "--no-privileges", "--role=" + OwnerRole, "--exit-on-error", "--single-transaction", "ON_ERROR_STOP=1", "SET ROLE " + OwnerRole, "DETAIL|CONTEXT"} {
		g.Expect(script).To(ContainSubstring(want))
	}
	g.Expect(strings.Count(script, "/dev/termination-log")).To(Equal(1))
}

// envOf maps the first container's environment to values, or to
// "secret name/key" for values from a Secret.
func envOf(t *testing.T, job *unstructured.Unstructured, list string) map[string]string {
	t.Helper()
	out := map[string]string{}
	c := nestedSlice(t, job, "spec", "template", "spec", list)[0].(map[string]any)
	for _, e := range c["env"].([]any) {
		e := e.(map[string]any)
		if v, ok := e["value"].(string); ok {
			out[e["name"].(string)] = v
			continue
		}
		ref := e["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)
		out[e["name"].(string)] = "secret " + ref["name"].(string) + "/" + ref["key"].(string)
	}
	return out
}

// The configuration's image and CA bundle are the Job's when the broker
// names none (the chart sets seedImage to the broker's own image).
func TestS3SeedJobFromConfig(t *testing.T) {
	g := NewWithT(t)
	cfg := DefaultConfig()
	cfg.SeedImage, cfg.SeedCABundle = "registry.example/strata-broker:2.0", "PEM"
	job, err := (&Provisioner{Config: cfg}).S3SeedJob(testInstance(t, "dev-lite", nil), S3SeedJob{Source: s3SeedJob().Source, LoginSecret: "l"})
	g.Expect(err).NotTo(HaveOccurred())
	fetch := nestedSlice(t, job, "spec", "template", "spec", "initContainers")[0].(map[string]any)
	g.Expect(fetch["image"]).To(Equal("registry.example/strata-broker:2.0"))
	g.Expect(envOf(t, job, "initContainers")).To(HaveKeyWithValue(seedfetch.CABundleEnv, "PEM"))
	// Deprovision deletes the Job with the instance's leftovers.
	inst := testInstance(t, "dev-lite", map[string]any{"seed": map[string]any{"s3": map[string]any{"bucket": "b", "key": "k", "credentials_secret": "c"}}})
	g.Expect((&Provisioner{Config: cfg}).Leftovers(inst)).To(ContainElement(S3SeedJobRef(inst)))
}

func TestAssessS3Seed(t *testing.T) {
	inst := testInstance(t, "dev-lite", nil)
	src := S3Seed{Bucket: "dumps", Key: "orders.pgdump"}
	name := S3SeedJobName(inst)
	job := func(conds ...map[string]any) *unstructured.Unstructured {
		j := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": name}}}
		var cs []any
		for _, c := range conds {
			cs = append(cs, c)
		}
		j.Object["status"] = map[string]any{"conditions": cs}
		return j
	}
	cond := func(typ, reason, msg string) map[string]any {
		return map[string]any{"type": typ, "status": "True", "reason": reason, "message": msg}
	}
	pod := func(jobName, field, container string, state map[string]any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"metadata": map[string]any{"name": jobName + "-abcde", "labels": map[string]any{"batch.kubernetes.io/job-name": jobName}},
			"status":   map[string]any{field: []any{map[string]any{"name": container, "state": state}}},
		}}
	}
	terminated := func(code int64, msg string) map[string]any {
		return map[string]any{"terminated": map[string]any{"exitCode": code, "message": msg}}
	}
	const noKey = "parameters.seed.s3.key: there is no object s3://dumps/orders.pgdump (S3 404 NoSuchKey)"
	tests := []struct {
		name  string
		job   *unstructured.Unstructured
		pods  []*unstructured.Unstructured
		state provisioners.State
		desc  []string
	}{
		{name: "no Job yet", state: provisioners.InProgress, desc: []string{"seeding from s3://dumps/orders.pgdump"}},
		{name: "running", job: job(), pods: []*unstructured.Unstructured{pod(name, "initContainerStatuses", "fetch", map[string]any{"running": map[string]any{}})},
			state: provisioners.InProgress, desc: []string{"seeding from s3://dumps/orders.pgdump"}},
		{name: "an image that cannot be pulled says so", job: job(), pods: []*unstructured.Unstructured{pod(name, "initContainerStatuses", "fetch", map[string]any{"waiting": map[string]any{"reason": "ImagePullBackOff"}})},
			state: provisioners.InProgress, desc: []string{"seeding from s3://dumps/orders.pgdump (container fetch: ImagePullBackOff)"}},
		{name: "complete", job: job(cond("Complete", "", "")), state: provisioners.Succeeded, desc: []string{"seeded from s3://dumps/orders.pgdump"}},
		{name: "the fetch failed: its message", job: job(cond("Failed", "BackoffLimitExceeded", "")),
			pods:  []*unstructured.Unstructured{pod(name, "initContainerStatuses", "fetch", terminated(1, noKey+"\n"))},
			state: provisioners.Failed, desc: []string{noKey + "; the instance is there but not seeded", "kubectl -n " + testNamespace + " logs job/" + name}},
		{name: "the restore failed, seen before the Job's condition", job: job(),
			pods:  []*unstructured.Unstructured{pod(name, "containerStatuses", "restore", terminated(1, "parameters.seed.s3.key: pg_restore exited 1 restoring the dump: …"))},
			state: provisioners.Failed, desc: []string{"parameters.seed.s3.key: pg_restore exited 1"}},
		{name: "a pod of an earlier Job of the same name is not ours", job: func() *unstructured.Unstructured { j := job(); j.SetUID("new-uid"); return j }(),
			pods: []*unstructured.Unstructured{func() *unstructured.Unstructured {
				p := pod(name, "containerStatuses", "restore", terminated(1, "the earlier attempt's"))
				p.SetLabels(map[string]string{"batch.kubernetes.io/job-name": name, "batch.kubernetes.io/controller-uid": "old-uid"})
				return p
			}()},
			state: provisioners.InProgress},
		{name: "another Job's pod is not ours", job: job(),
			pods:  []*unstructured.Unstructured{pod("other", "containerStatuses", "restore", terminated(1, "not ours"))},
			state: provisioners.InProgress},
		{name: "the deadline", job: job(cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")),
			state: provisioners.Failed, desc: []string{"parameters.seed.s3: the seed did not finish within the Job's deadline"}},
		{name: "failed without a message", job: job(cond("Failed", "PodFailurePolicy", "")),
			state: provisioners.Failed, desc: []string{"parameters.seed.s3: the seed Job failed (PodFailurePolicy)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := AssessS3Seed(inst, src, tc.job, tc.pods)
			g.Expect(p.State).To(Equal(tc.state), p.Description)
			for _, d := range tc.desc {
				g.Expect(p.Description).To(ContainSubstring(d))
			}
		})
	}
}
