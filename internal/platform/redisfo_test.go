//go:build linux

package platform

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/strata-dev/strata/catalog"
	rd "github.com/strata-dev/strata/provisioners/redis"
)

// failoverGoal is issue 11's objective: writes through the binding come
// back within 10 s of the master's loss. It is a speed target, so it is
// measured and reported (each run's TIMING line, the figures in
// docs/redis.md), never asserted: a loaded CI machine must not turn a
// slow failover into a red build, while a failover that never finishes
// (writes not back within writesBack) or a lost acknowledged write does.
const failoverGoal = 10 * time.Second

// writesBack bounds the wait for writes to succeed again: far beyond the
// goal, a failover that has not happened by then is broken.
const writesBack = 2 * time.Minute

// TestRedisFailoverLosesNoAcknowledgedWrite provisions ha and standard
// through the broker (installed with its chart) on the real platform, and
// deletes the master pod several times, gracefully and forced
// (--grace-period=0 --force), under a steady write load through the
// binding (5 RPUSH a second, TLS and AUTH with the binding's values only,
// no retries, pooled connections), and crashes its redis-server (SIGKILL),
// the last time followed at once by a SENTINEL RESET (the operator's,
// which leaves no replica to promote: the crashed Redis takes its role
// back). After each, every acknowledged write must be on the master, and
// writes must succeed again (how fast is measured against failoverGoal
// and logged).
func TestRedisFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	t.Parallel() // each on a platform of its own (docs/platform.md, Tests)
	ctx, p, _ := startTestPlatform(t, "redisfo", 80*time.Minute)
	if err := p.InstallRedisOperator(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	if err := p.InstallCertManager(ctx); err != nil {
		t.Fatalf("%v\n(component logs in %s)", err, p.LogDir())
	}
	osb, _ := installTestBroker(ctx, t, p, nil)
	const tenant = "apps"
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := &redisOnPlatform{p: p, osb: osb, ns: tenant}
	// The plans' CPU per Redis pod does not fit a 2-CPU node: the test
	// asks for less (parameters the plans allow).
	small := map[string]any{"storage_gb": 5, "resources": map[string]any{"cpu": "200m", "memory": "512Mi"}}
	for _, plan := range []struct {
		name, id string
		pods     int
	}{
		{"ha", catalog.RedisHAID, 3},
		{"standard", catalog.RedisStandardID, 2},
	} {
		t.Run(plan.name, func(t *testing.T) {
			inst := r.provision(ctx, t, plan.id, small)
			c := r.bind(ctx, t, inst)
			for run, kind := range []string{graceful, forced, crash, graceful, forced, crash, crashAfterReset, forcedAfterReset} {
				t.Run(fmt.Sprintf("%d-%s", run+1, kind), func(t *testing.T) {
					r.waitSteady(ctx, t, inst, plan.pods)
					r.failMasterUnderLoad(ctx, t, plan.name, inst, c, kind)
				})
			}
			r.deprovision(ctx, t, inst, c)
		})
	}
}

// How the master goes away.
const (
	// graceful: the pod is deleted (an eviction, a drain, a rollout).
	graceful = "graceful"
	// forced: kubectl delete --grace-period=0 --force. The API object is
	// gone at once; the kubelet still sends SIGTERM, with a 2 s grace.
	forced = "forced"
	// crash: redis-server is SIGKILLed from the host (a crash or the OOM
	// killer): no hand-over, the Sentinels must notice (down-after).
	crash = "crash"
	// crashAfterReset: the crash of a race seen in CI and in the runs
	// of docs/redis.md, made deterministic. The operator sends every
	// Sentinel SENTINEL RESET when one lists more replicas than the
	// instance has (a replaced pod's old address), and Sentinel then
	// relearns the replicas from the master's INFO. Landing just after
	// the master crashed, the reset leaves the Sentinels knowing no
	// replica, so no failover can happen: the restarted Redis must take
	// its role back (the agent's REPLICAOF NO ONE) and serve again.
	crashAfterReset = "crash-after-sentinel-reset"
	// forcedAfterReset: the same reset landing while a forced deletion
	// takes the master away (seen in CI): the Sentinels know no replica
	// and name an address no pod has any more, and the redis-operator
	// waits for a failover that cannot come. The role agents elect the
	// replica with the most of the lost master's stream and promote it,
	// and the operator then points the Sentinels at it
	// (cmd/strata-redis-role/orphan.go).
	forcedAfterReset = "forced-after-sentinel-reset"
)

// strataMasters lists the pods the role agent labels master.
func strataMasters(ctx context.Context, p *Platform, ns, failover string) ([]corev1.Pod, error) {
	return redisPods(ctx, p, ns, failover, map[string]string{rd.RoleLabel: "master"})
}

// waitSteady waits until the instance is whole again after a failover:
// every Redis pod ready, exactly one labelled master by the role agents,
// and every Sentinel knowing the master, pods-1 healthy replicas and the
// other Sentinels (Sentinel learns replicas from INFO every 10 s: a
// failover before that could find no replica to promote).
func (r *redisOnPlatform) waitSteady(ctx context.Context, t *testing.T, inst *redisInstanceRef, pods int) {
	t.Helper()
	step := time.Now()
	var why string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		all, err := redisPods(ctx, r.p, r.ns, inst.name, nil)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		ready := 0
		for i := range all {
			if podReady(&all[i]) && all[i].DeletionTimestamp == nil {
				ready++
			}
		}
		masters, err := strataMasters(ctx, r.p, r.ns, inst.name)
		if err != nil || ready != pods || len(all) != pods || len(masters) != 1 {
			why = fmt.Sprintf("%d of %d Redis pods ready, %d labelled master (%v)", ready, pods, len(masters), err)
			return false, nil
		}
		sentinels, err := r.p.Client.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{
			"app.kubernetes.io/name": inst.name, "app.kubernetes.io/component": "sentinel",
		}).String()})
		if err != nil {
			return false, nil
		}
		for _, s := range sentinels.Items {
			if why = sentinelView(ctx, s.Status.PodIP, masters[0].Status.PodIP, pods-1, len(sentinels.Items)-1); why != "" {
				why = "Sentinel " + s.Name + ": " + why
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the instance did not become steady: %s (%v); pods: %s", why, err, r.p.podSummary(ctx, r.ns))
	}
	t.Logf("steady after %s: %d pods ready, one labelled master, every Sentinel sees it with %d replicas", time.Since(step).Round(time.Second), pods, pods-1)
}

// sentinelView says what is missing from one Sentinel's view ("" when
// nothing is).
func sentinelView(ctx context.Context, sentinelIP, masterIP string, replicas, others int) string {
	sc := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(sentinelIP, strconv.Itoa(rd.SentinelPort)), DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	defer sc.Close()
	m, err := sc.Master(ctx, rd.MasterName).Result()
	if err != nil {
		return err.Error()
	}
	if m["ip"] != masterIP || m["flags"] != "master" {
		return fmt.Sprintf("master %s flags %s, want %s", m["ip"], m["flags"], masterIP)
	}
	if m["num-other-sentinels"] != strconv.Itoa(others) {
		return fmt.Sprintf("%s other Sentinels, want %d", m["num-other-sentinels"], others)
	}
	rs, err := sc.Replicas(ctx, rd.MasterName).Result()
	if err != nil {
		return err.Error()
	}
	ok := 0
	for _, s := range rs {
		if s["flags"] == "slave" && s["master-link-status"] == "ok" {
			ok++
		}
	}
	if ok != replicas {
		return fmt.Sprintf("%d healthy replicas of %d known, want %d", ok, len(rs), replicas)
	}
	return ""
}

// failMasterUnderLoad deletes (or crashes) the pod labelled master under
// 5 writes a second through the binding, waits until 25 writes in a row succeeded
// after the deletion, and checks the figures: no acknowledged write lost,
// writes back (measured against failoverGoal).
func (r *redisOnPlatform) failMasterUnderLoad(ctx context.Context, t *testing.T, plan string, inst *redisInstanceRef, c *redis.Client, kind string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			logRedisPods(ctx, t, r.p, r.ns, inst.name)
		}
	}()
	key := "writes-" + strings.ReplaceAll(t.Name(), "/", "-")
	loadCtx, stopLoad := context.WithCancel(ctx)
	load := &writeLoad{}
	done := make(chan struct{})
	go func() { defer close(done); load.run(loadCtx, c, key, 200*time.Millisecond) }()
	defer func() { stopLoad(); <-done }()
	time.Sleep(3 * time.Second)

	masters, err := strataMasters(ctx, r.p, r.ns, inst.name)
	if err != nil || len(masters) != 1 {
		t.Fatalf("%d pods labelled master (%v)", len(masters), err)
	}
	old := masters[0]
	opts := metav1.DeleteOptions{}
	if kind == forced || kind == forcedAfterReset {
		// What kubectl delete --grace-period=0 --force sends.
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	sentinelSwitch := watchSentinelSwitch(loadCtx, r.p, r.ns, inst.name, old.Status.PodIP)
	deleted := time.Now()
	if kind == crash || kind == crashAfterReset {
		if _, err := killContainerProcess(&old, "redis-server"); err != nil {
			t.Fatal(err)
		}
		if kind == crashAfterReset {
			if err := resetSentinels(ctx, r.p, r.ns, inst.name); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := r.p.Client.CoreV1().Pods(r.ns).Delete(ctx, old.Name, opts); err != nil {
		t.Fatal(err)
	}
	if kind == forcedAfterReset {
		// Reset until the old master's Redis is gone (its preStop hook
		// and grace), then once more: a Sentinel relearns replicas only
		// from a live master, so they end up knowing none.
		begin := time.Now()
		for gone := 0; gone < 2 && time.Since(begin) < time.Minute; time.Sleep(250 * time.Millisecond) {
			if err := resetSentinels(ctx, r.p, r.ns, inst.name); err != nil {
				t.Logf("resetting the Sentinels: %v", err)
			}
			if conn, err := net.DialTimeout("tcp", net.JoinHostPort(old.Status.PodIP, strconv.Itoa(rd.RedisPort)), 300*time.Millisecond); err == nil {
				conn.Close()
				gone = 0
			} else {
				gone++
			}
		}
		t.Logf("the Sentinels were reset until the old master's Redis stopped answering, %s after the delete", time.Since(deleted).Round(100*time.Millisecond))
	}
	// The role agent labels the new master: another pod, or, after a
	// crash, the crashed pod itself once its restarted Redis took the
	// role back because the Sentinels knew no replica to promote
	// (docs/redis.md#failover; its AOF holds what it acknowledged, which
	// the lost-writes check below verifies).
	var labelled time.Duration
	var newMaster string
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := strataMasters(ctx, r.p, r.ns, inst.name)
		if err != nil {
			return false, nil
		}
		for _, pod := range pods {
			if pod.Name != old.Name {
				newMaster, labelled = pod.Name, time.Since(deleted)
				return true, nil
			}
			if (kind == crash || kind == crashAfterReset) && pod.UID == old.UID && redisRestarts(pod.Status.ContainerStatuses) > redisRestarts(old.Status.ContainerStatuses) {
				newMaster, labelled = pod.Name+" (the crashed pod, its Redis restarted and took the role back)", time.Since(deleted)
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Errorf("no pod labelled %s=master after the delete (another pod, or after a crash the restarted one): %v; pods: %s", rd.RoleLabel, err, r.p.podSummary(ctx, r.ns))
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, writesBack, true, func(context.Context) (bool, error) {
		return load.successesSince(deleted) >= 25, nil
	}); err != nil {
		t.Errorf("writes did not come back within %s: %v", writesBack, err)
	}
	time.Sleep(2 * time.Second)
	stopLoad()
	<-done
	switched, ok := <-sentinelSwitch
	list, err := c.LRange(ctx, key, 0, -1).Result()
	if err != nil {
		t.Fatalf("reading the written list through the binding: %v", err)
	}
	f := load.figures(deleted, list)
	gap := load.longestGapAfter(deleted)
	sentinelFigure := "not seen"
	if ok {
		sentinelFigure = switched.Sub(deleted).Round(100 * time.Millisecond).String()
	}
	acked := 0
	for _, w := range load.snapshot() {
		if w.err == nil {
			acked++
		}
	}
	t.Logf("TIMING %s failover (%s: master pod %s): Sentinels named another master after %s; %s labelled %s=master after %s; first failed write %s after the delete; first successful write after the last failure %s after the delete; longest time without a successful write from the delete %s; %d writes failed %v; %d of %d acknowledged writes lost %v",
		plan, kind, old.Name, sentinelFigure, newMaster, rd.RoleLabel, labelled.Round(100*time.Millisecond),
		f.firstFailure.Round(100*time.Millisecond), f.recovered.Round(100*time.Millisecond), gap.Round(100*time.Millisecond),
		f.failed, f.errors, len(f.lost), acked, f.lost)
	if len(f.lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(f.lost), f.lost)
	}
	if f.recovered > failoverGoal || gap > failoverGoal {
		t.Logf("GOAL MISSED %s failover (%s): writes came back %s after the loss of the master (longest gap %s); the goal is %s (docs/redis.md)",
			plan, kind, f.recovered.Round(100*time.Millisecond), gap.Round(100*time.Millisecond), failoverGoal)
	}
	if role, err := infoField(ctx, c, "replication", "role"); err != nil || role != "master" {
		t.Errorf("after the failover the binding leads to role %q (%v), want master", role, err)
	}
	if kind == forcedAfterReset {
		t.Logf("recovered by the role agents' orphan recovery (an agent promoted its Redis): %v", r.agentsLogged(ctx, inst, "becomes master (REPLICAOF NO ONE)"))
	}
}

// agentsLogged says whether a role agent of the instance logged text.
func (r *redisOnPlatform) agentsLogged(ctx context.Context, inst *redisInstanceRef, text string) bool {
	pods, err := redisPods(ctx, r.p, r.ns, inst.name, nil)
	if err != nil {
		return false
	}
	for _, pod := range pods {
		b, err := r.p.Client.CoreV1().Pods(r.ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "strata-redis-role"}).DoRaw(ctx)
		if err == nil && strings.Contains(string(b), text) {
			return true
		}
	}
	return false
}

// resetSentinels sends SENTINEL RESET for the instance's master to every
// Sentinel, as the operator's periodic check does.
func resetSentinels(ctx context.Context, p *Platform, ns, failover string) error {
	pods, err := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{
		"app.kubernetes.io/name": failover, "app.kubernetes.io/component": "sentinel",
	}).String()})
	if err != nil {
		return err
	}
	for _, pod := range pods.Items {
		sc := redis.NewSentinelClient(&redis.Options{Addr: net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(rd.SentinelPort)), DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
		err := sc.Reset(ctx, rd.MasterName).Err()
		sc.Close()
		if err != nil {
			return fmt.Errorf("SENTINEL RESET on %s: %w", pod.Name, err)
		}
	}
	return nil
}

// successesSince counts the writes that succeeded after the last failure
// following t (or since t when none failed).
func (l *writeLoad) successesSince(t time.Time) int {
	n := 0
	for _, w := range l.snapshot() {
		if w.at.Before(t) {
			continue
		}
		if w.err != nil {
			n = 0
			continue
		}
		n++
	}
	return n
}

// longestGapAfter is the longest time, from t on, between two successful
// writes' answers (t counting as one): how long the binding took no
// writes.
func (l *writeLoad) longestGapAfter(t time.Time) time.Duration {
	last, gap := t, time.Duration(0)
	for _, w := range l.snapshot() {
		if w.err != nil {
			continue
		}
		end := w.at.Add(w.took)
		if end.Before(t) {
			continue
		}
		if d := end.Sub(last); d > gap {
			gap = d
		}
		last = end
	}
	return gap
}

// logRedisPods logs, for a failed run, the last lines of every container
// of the instance's pods (the previous instance of a restarted one too):
// what Redis, the role agents and the Sentinels did.
func logRedisPods(ctx context.Context, t *testing.T, p *Platform, ns, failover string) {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + failover})
	if err != nil {
		t.Logf("listing the pods for their logs: %v", err)
		return
	}
	tail := int64(60)
	for _, pod := range pods.Items {
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == "redis-exporter" || cs.Name == "strata-tls-reload" {
				continue
			}
			for _, previous := range []bool{false, true} {
				if previous && cs.RestartCount == 0 {
					continue
				}
				b, err := p.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: cs.Name, Previous: previous, TailLines: &tail}).DoRaw(ctx)
				t.Logf("logs of %s/%s (previous %v, %d restarts, %v):\n%s", pod.Name, cs.Name, previous, cs.RestartCount, err, b)
			}
		}
	}
}
