package integration_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/strata-dev/strata/catalog"
)

// TestFlowsSurviveReplicaKillsAndAnAPIServerRestart runs many whole
// lifecycles (provision → bind → unbind → deprovision) at once against two
// replicas of the broker binary, configured as the chart configures them,
// while replicas are killed with SIGKILL at random (and started again)
// and the API server restarts once. The clients behave as platforms do:
// a request that gets no answer, a 5xx or a ConcurrencyError is repeated,
// on either replica.
//
// Every operation must end, nothing may be created twice, and afterwards
// nothing the broker made may remain: no object labelled with a flow's
// instance or binding, no Secret holding a deleted binding's password, no
// binding record.
func TestFlowsSurviveReplicaKillsAndAnAPIServerRestart(t *testing.T) {
	const (
		ns    = "team-chaos"
		flows = 100
		kills = 10
	)
	w := sharedWorld(t)
	w.ensureNamespace(t, ns, nil)
	replicas := []*brokerProcess{w.startBrokerBinary(t, "replica-a"), w.startBrokerBinary(t, "replica-b")}
	platform := newRetryingPlatform(t, replicas)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	opsCtx, stopOps := context.WithCancel(ctx)
	var opsDone sync.WaitGroup
	opsDone.Add(1)
	ca := testCAPEM(t)
	go func() { defer opsDone.Done(); w.standInOperators(opsCtx, ns, ca) }()
	defer func() { stopOps(); opsDone.Wait() }()

	// Chaos: SIGKILL a random replica every half second to a second and a
	// half, and start it again shortly after; restart the API server once,
	// half-way.
	var killed atomic.Int32
	chaosCtx, stopChaos := context.WithCancel(ctx)
	chaosDone := make(chan error, 1)
	go func() {
		var restartErr error
		for i := 0; i < kills; i++ {
			select {
			case <-chaosCtx.Done():
				chaosDone <- restartErr
				return
			case <-time.After(500*time.Millisecond + rand.N(time.Second)):
			}
			r := replicas[rand.N(len(replicas))]
			r.Kill()
			killed.Add(1)
			time.Sleep(200*time.Millisecond + rand.N(800*time.Millisecond))
			if err := r.Restart(platform.http); err != nil {
				chaosDone <- err
				return
			}
			if i == kills/2 {
				restartErr = w.env.RestartAPIServer()
			}
		}
		chaosDone <- restartErr
	}()

	ids := make([]string, flows)
	bids := make([]string, flows)
	errs := make([]error, flows)
	var wg sync.WaitGroup
	for i := range flows {
		ids[i] = fmt.Sprintf("fa170000-0000-4000-8000-%012d", i)
		bids[i] = fmt.Sprintf("fa170000-0000-4000-8001-%012d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = platform.lifecycle(ctx, w, ns, ids[i], bids[i])
		}()
	}
	wg.Wait()
	stopChaos()
	g := NewWithT(t)
	g.Expect(<-chaosDone).To(Succeed(), "the replicas and the API server restarted")
	g.Expect(killed.Load()).To(BeNumerically(">=", kills), "replicas were killed during the flows")
	for i, err := range errs {
		g.Expect(err).NotTo(HaveOccurred(), "flow %d (instance %s) did not end", i, ids[i])
	}

	instances := map[string]bool{}
	for _, id := range ids {
		instances[id] = true
	}
	bindings := map[string]bool{}
	for _, b := range bids {
		bindings[b] = true
	}
	// Nothing the broker made for the flows is left (the stand-in garbage
	// collector finishes the last foreground deletions).
	g.Eventually(func(g Gomega) {
		for _, gvr := range append(allInstanceGVRs, certificateGVR) {
			for _, o := range w.list(gvr, ns, "") {
				g.Expect(instances[o.GetLabels()["strata.dev/instance-id"]]).To(BeFalse(), "%s %s of a deprovisioned instance is left", gvr.Resource, o.GetName())
				g.Expect(bindings[o.GetLabels()["strata.dev/binding-id"]]).To(BeFalse(), "%s %s of an unbound binding is left", gvr.Resource, o.GetName())
			}
		}
		secrets, err := w.core.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		for _, s := range secrets.Items {
			_, hasPassword := s.Data["password"]
			g.Expect(hasPassword && s.Labels["strata.dev/binding-id"] != "").To(BeFalse(), "Secret %s holds the password of a deleted binding", s.Name)
		}
	}, 60*time.Second, time.Second).Should(Succeed())

	records, err := w.core.CoreV1().Secrets(brokerNS).List(context.Background(), metav1.ListOptions{LabelSelector: "strata.dev/record"})
	g.Expect(err).NotTo(HaveOccurred())
	for _, s := range records.Items {
		var rec struct {
			ID         string `json:"id"`
			InstanceID string `json:"instanceId"`
			Deleted    bool   `json:"deleted"`
		}
		g.Expect(json.Unmarshal(s.Data["record.json"], &rec)).To(Succeed())
		switch s.Labels["strata.dev/record"] {
		case "binding":
			g.Expect(bindings[rec.ID]).To(BeFalse(), "the record of unbound binding %s is left", rec.ID)
		case "instance":
			if instances[rec.ID] {
				g.Expect(rec.Deleted).To(BeTrue(), "instance %s is recorded as deleted", rec.ID)
			}
		}
	}
	t.Logf("%d lifecycles; %d replica kills; %d requests repeated after no answer, a 5xx or a ConcurrencyError",
		flows, killed.Load(), platform.repeats.Load())
}

// retryingPlatform is a platform client that repeats what went unanswered,
// spreading requests over the replicas.
type retryingPlatform struct {
	t        testing.TB
	replicas []*brokerProcess
	http     *http.Client
	repeats  atomic.Int64
}

func newRetryingPlatform(t testing.TB, replicas []*brokerProcess) *retryingPlatform {
	pool := x509.NewCertPool()
	for _, r := range replicas {
		crt, err := os.ReadFile(filepath.Join(filepath.Dir(r.logPath), "tls", "tls.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool.AppendCertsFromPEM(crt)
	}
	return &retryingPlatform{t: t, replicas: replicas, http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64},
	}}
}

// call sends one request to a random replica until it gets an answer that
// is not a 5xx nor a ConcurrencyError, and returns it.
func (p *retryingPlatform) call(ctx context.Context, method, path string, body any) (int, map[string]any, error) {
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			p.repeats.Add(1)
			select {
			case <-ctx.Done():
				return 0, nil, fmt.Errorf("%s %s: no final answer before the deadline", method, path)
			case <-time.After(300 * time.Millisecond):
			}
		}
		r := p.replicas[rand.N(len(p.replicas))]
		req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(raw))
		if err != nil {
			return 0, nil, err
		}
		req.SetBasicAuth(osbUser, osbPass)
		req.Header.Set("X-Broker-API-Version", apiHeader)
		req.Header.Set("Content-Type", "application/json")
		res, err := p.http.Do(req)
		if err != nil {
			continue // no answer: the replica died, or the connection was cut
		}
		data, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		if res.StatusCode >= 500 || res.StatusCode == http.StatusUnprocessableEntity && out["error"] == "ConcurrencyError" {
			continue
		}
		return res.StatusCode, out, nil
	}
}

// lifecycle provisions a dev-lite instance, waits for it, binds, unbinds
// and deprovisions it, as a platform does, checking each answer.
func (p *retryingPlatform) lifecycle(ctx context.Context, w *world, ns, id, bid string) error {
	path := "/v2/service_instances/" + id
	bpath := path + "/service_bindings/" + bid
	ids := "service_id=" + catalog.PostgresServiceID + "&plan_id=" + catalog.PostgresDevLiteID
	want := func(step string, code int, body map[string]any, err error, ok ...int) error {
		if err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		for _, c := range ok {
			if code == c {
				return nil
			}
		}
		return fmt.Errorf("%s: answered %d %v", step, code, body)
	}
	// poll waits until last_operation answers final (a state other than
	// in progress, or 410).
	poll := func(step string) (int, map[string]any, error) {
		for {
			code, body, err := p.call(ctx, http.MethodGet, path+"/last_operation", nil)
			if err != nil || code != http.StatusOK || body["state"] != "in progress" {
				return code, body, err
			}
			select {
			case <-ctx.Done():
				return 0, nil, fmt.Errorf("%s: still in progress at the deadline: %v", step, body["description"])
			case <-time.After(time.Second):
			}
		}
	}

	code, body, err := p.call(ctx, http.MethodPut, path+"?accepts_incomplete=true", provisionBody(catalog.PostgresDevLiteID, ns, nil))
	// 200: an earlier attempt's answer was lost and it already finished.
	if err := want("provision", code, body, err, http.StatusAccepted, http.StatusOK); err != nil {
		return err
	}
	code, body, err = poll("provision")
	if err := want("provision poll", code, body, err, http.StatusOK); err != nil {
		return err
	}
	if body["state"] != "succeeded" {
		return fmt.Errorf("provision ended %v: %v", body["state"], body["description"])
	}

	code, body, err = p.call(ctx, http.MethodPut, bpath, map[string]any{"service_id": catalog.PostgresServiceID, "plan_id": catalog.PostgresDevLiteID})
	if err := want("bind", code, body, err, http.StatusCreated, http.StatusOK); err != nil {
		return err
	}
	creds, _ := body["credentials"].(map[string]any)
	if creds["password"] == nil {
		return fmt.Errorf("bind answered no password: %v", body)
	}
	// Exactly the binding's two logins (the application's and the
	// migrations' owner) exist, and the password answered is the one the
	// database will have: no second set of credentials from a repeat.
	// The test's own reads go to the API server the chaos restarts: they
	// wait through its restart as a client would (the broker's answer is
	// what is being checked, not the test's luck).
	var roles *unstructured.UnstructuredList
	err = throughAPIServerRestart(ctx, func() (err error) {
		roles, err = w.dyn.Resource(databaseRoleGVR).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: "strata.dev/binding-id=" + bid})
		return err
	})
	if err != nil {
		return fmt.Errorf("list the binding's DatabaseRoles: %w", err)
	}
	if n := len(live(roles.Items)); n != 2 {
		return fmt.Errorf("bind: %d DatabaseRoles for the binding, want 2", n)
	}
	var secret *corev1.Secret
	err = throughAPIServerRestart(ctx, func() (err error) {
		secret, err = w.core.CoreV1().Secrets(ns).Get(ctx, "binding-"+bid, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("bind: the binding Secret: %w", err)
	}
	if string(secret.Data["password"]) != creds["password"] {
		return fmt.Errorf("bind: the binding Secret's password is not the one answered")
	}

	code, body, err = p.call(ctx, http.MethodDelete, bpath+"?"+ids, nil)
	// 410: an earlier attempt unbound it and its answer was lost.
	if err := want("unbind", code, body, err, http.StatusOK, http.StatusGone); err != nil {
		return err
	}
	code, body, err = p.call(ctx, http.MethodDelete, path+"?accepts_incomplete=true&"+ids, nil)
	if err := want("deprovision", code, body, err, http.StatusAccepted, http.StatusGone); err != nil {
		return err
	}
	code, body, err = poll("deprovision")
	return want("deprovision poll", code, body, err, http.StatusGone)
}

// throughAPIServerRestart runs read until it does not fail to connect,
// for as long as an API server restart takes (well under 30 s here).
func throughAPIServerRestart(ctx context.Context, read func() error) error {
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Steps: 20, Cap: 3 * time.Second}
	return retry.OnError(backoff, func(err error) bool {
		return ctx.Err() == nil && (utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err))
	}, read)
}

// standInOperators plays, until ctx ends, the part of CloudNativePG
// (Clusters and their Databases report ready, DatabaseRoles applied, the
// Cluster's CA Secret) and of kube-controller-manager's garbage collector
// (foreground deletions finish) in ns. Errors are ignored: the API server
// restarts under it, and the next round repeats.
func (w *world) standInOperators(ctx context.Context, ns string, caPEM []byte) {
	list := func(gvr schema.GroupVersionResource) []unstructured.Unstructured {
		l, err := w.dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil
		}
		return l.Items
	}
	applied := func(gvr schema.GroupVersionResource, o unstructured.Unstructured) {
		if ok, _, _ := unstructured.NestedBool(o.Object, "status", "applied"); ok {
			return
		}
		_ = unstructured.SetNestedField(o.Object, map[string]any{"applied": true, "observedGeneration": o.GetGeneration()}, "status")
		_, _ = w.dyn.Resource(gvr).Namespace(ns).UpdateStatus(ctx, &o, metav1.UpdateOptions{})
	}
	for ctx.Err() == nil {
		for _, gvr := range append(allInstanceGVRs, certificateGVR) {
			for _, o := range list(gvr) {
				if o.GetDeletionTimestamp() != nil && len(o.GetFinalizers()) > 0 {
					o.SetFinalizers(nil)
					_, _ = w.dyn.Resource(gvr).Namespace(ns).Update(ctx, &o, metav1.UpdateOptions{})
				}
			}
		}
		for _, c := range list(clusterGVR) {
			if c.GetDeletionTimestamp() != nil {
				continue
			}
			if phase, _, _ := unstructured.NestedString(c.Object, "status", "phase"); phase == "" {
				n, _, _ := unstructured.NestedInt64(c.Object, "spec", "instances")
				now := time.Now().UTC().Format(time.RFC3339)
				_ = unstructured.SetNestedField(c.Object, map[string]any{
					"phase": "Cluster in healthy state", "instances": n, "readyInstances": n, "currentPrimary": c.GetName() + "-1",
					"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready", "lastTransitionTime": now}},
				}, "status")
				_, _ = w.dyn.Resource(clusterGVR).Namespace(ns).UpdateStatus(ctx, &c, metav1.UpdateOptions{})
			}
			ca := c.GetName() + "-ca"
			if _, err := w.core.CoreV1().Secrets(ns).Get(ctx, ca, metav1.GetOptions{}); err != nil {
				_, _ = w.core.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: ca, Labels: map[string]string{"cnpg.io/cluster": c.GetName()}},
					Data:       map[string][]byte{"ca.crt": caPEM},
				}, metav1.CreateOptions{})
			}
		}
		for _, o := range list(databaseGVR) {
			applied(databaseGVR, o)
		}
		for _, o := range list(databaseRoleGVR) {
			applied(databaseRoleGVR, o)
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}
