// Command strata-redis-role is the role agent Strata runs beside Redis in
// every Redis pod of an instance (provisioners/redis, docs/redis.md#failover).
//
// The binding's host is the Service <instance>-tls, which selects the pod
// labelled strata.dev/redis-role=master. The redis-operator's own label
// follows a failover only on its 30 s resync and once the replacement pod
// is ready (a minute or more), so the agent labels its own pod from what
// its Redis and the Sentinels say, every few hundred milliseconds:
//
//   - master: Redis's ROLE is master and the Sentinels name this pod's IP
//     as the master. Only then may clients reach it.
//   - replica: anything else. The agent closes every client connection on
//     the TLS port, so that pooled connections (which kube-proxy keeps on
//     the old pod) reconnect through the Service to the new master.
//
// A Redis that is master while the Sentinels name another pod (the old
// master after a promotion) is fenced: min-replicas-to-write is raised out
// of reach, so it refuses every write (NOREPLICAS) instead of acknowledging
// writes that the promoted replica never sees. On a master the Sentinels
// name, min-replicas-to-write is the plan's (-min-replicas), or 0 while the
// master has no replica at all when -alone-ok is set (standard: writes go
// on while the only replica is away).
//
// On SIGTERM (the pod is being deleted) a master pauses writes, fences itself, waits until
// its replicas have everything it acknowledged, and asks the Sentinels for
// a failover, so that a graceful (or forced) deletion loses no acknowledged
// write; the Redis container's preStop hook waits for this.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// fenced is the min-replicas-to-write of a master that must not accept
// writes: more replicas than any instance has.
const fenced = 1000000

type config struct {
	redisAddr    string
	sentinelAddr string
	masterName   string
	tlsPort      string
	label        string
	minReplicas  int
	aloneOK      bool
	interval     time.Duration
	podName      string
	podNamespace string
	podIP        string
	peers        []string // the instance's Redis pods, this one included
}

func main() {
	var c config
	flag.StringVar(&c.redisAddr, "redis", "127.0.0.1:6379", "the local Redis (plaintext port)")
	flag.StringVar(&c.sentinelAddr, "sentinel", "", "the Sentinels' Service, host:port")
	flag.StringVar(&c.masterName, "master-name", "mymaster", "the name the Sentinels monitor the master under")
	flag.StringVar(&c.tlsPort, "tls-port", "6380", "Redis's client TLS port: connections to it are closed on a pod that is not the master")
	flag.StringVar(&c.label, "label", "strata.dev/redis-role", "the pod label to set to master or replica")
	flag.IntVar(&c.minReplicas, "min-replicas", 0, "min-replicas-to-write of a master the Sentinels name")
	flag.BoolVar(&c.aloneOK, "alone-ok", false, "a master without any replica accepts writes (min-replicas-to-write 0)")
	flag.DurationVar(&c.interval, "interval", 250*time.Millisecond, "how often Redis and the Sentinels are asked")
	peers := flag.String("peers", "", "the names of the instance's Redis pods, comma-separated (orphan recovery, orphan.go)")
	flag.Parse()
	if *peers != "" {
		c.peers = strings.Split(*peers, ",")
	}
	c.podName, c.podNamespace, c.podIP = os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"), os.Getenv("POD_IP")
	if c.sentinelAddr == "" || c.podName == "" || c.podNamespace == "" || c.podIP == "" {
		log.Fatal("strata-redis-role: -sentinel and the environment POD_NAME, POD_NAMESPACE and POD_IP are required")
	}
	kcfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatalf("strata-redis-role: %v", err)
	}
	kube, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		log.Fatalf("strata-redis-role: %v", err)
	}
	a := &agent{
		cfg: c,
		// The password comes from the auth Secret through the
		// environment, never the command line.
		redis: redis.NewClient(&redis.Options{
			Addr: c.redisAddr, Password: os.Getenv("REDISCLI_AUTH"),
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
			MaxRetries: -1, PoolSize: 2,
		}),
		sentinel: redis.NewSentinelClient(&redis.Options{
			Addr:        c.sentinelAddr,
			DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
			MaxRetries: -1, PoolSize: 1,
		}),
		patch: func(ctx context.Context, role string) error {
			body := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, c.label, role)
			_, err := kube.CoreV1().Pods(c.podNamespace).Patch(ctx, c.podName, types.MergePatchType, []byte(body), metav1.PatchOptions{})
			return err
		},
		podIP: func(ctx context.Context, name string) (string, error) {
			pod, err := kube.CoreV1().Pods(c.podNamespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			return pod.Status.PodIP, nil
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	a.run(ctx)
	stop()
	// The pod is going away: hand the master role over first. The
	// kubelet gives at least 2 s even to a forced deletion.
	sctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	a.handOver(sctx)
}

type agent struct {
	cfg      config
	redis    *redis.Client
	sentinel *redis.SentinelClient
	patch    func(ctx context.Context, role string) error
	podIP    func(ctx context.Context, name string) (string, error)

	failoverAt   time.Time // when the agent last asked for a failover
	strayingAt   time.Time // since when this replica follows another master than the Sentinels name
	followAt     time.Time // when the agent last made it follow theirs
	labelled     string    // the label last written
	labelledAt   time.Time // when
	sentinelSays string    // the master's IP the Sentinels last named
	sentinelAt   time.Time // when

	orphanSince     time.Time // since when the instance is orphaned (orphan.go)
	orphanCheckedAt time.Time // when that was last checked
}

// run keeps the pod's label, the fence and the TLS connections in line
// with the roles until ctx ends.
func (a *agent) run(ctx context.Context) {
	tick := time.NewTicker(a.cfg.interval)
	defer tick.Stop()
	for {
		a.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *agent) step(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ip, err := a.sentinelMaster(ctx); err == nil {
		a.sentinelSays, a.sentinelAt = ip, time.Now()
	}
	// When no Sentinel answers, the last answer stands: without Sentinels
	// no failover happens either.
	r, err := readRole(ctx, a.redis)
	if err != nil {
		r = role{}
	}
	// Writing alone needs a Sentinel's word from this very moment: a
	// master cut off from its replica and the Sentinels must not go on
	// acknowledging writes that the other side's promotion discards.
	fresh := time.Since(a.sentinelAt) < 2*time.Second
	aloneOK := a.cfg.aloneOK && fresh
	d := decide(r, a.sentinelSays == a.cfg.podIP, a.cfg.minReplicas, aloneOK)
	if r.role == "master" {
		a.setMinReplicas(ctx, d.minReplicas)
	}
	if restartedMaster(r, a.sentinelSays == a.cfg.podIP && fresh) &&
		time.Since(a.failoverAt) > 10*time.Second {
		// Redis crashed and came back as the operator's redis.conf
		// starts it, a replica of nothing, while the Sentinels still name
		// this pod: they would wait down-after plus 20 s (a master that
		// answers as a replica) before failing over, and the operator's
		// resync might meanwhile make this Redis, which lost what it had
		// not written to its AOF, the master again. The replicas have
		// everything it acknowledged and sent them: promote one now.
		a.failoverAt = time.Now()
		err := a.sentinel.Failover(ctx, a.cfg.masterName).Err()
		log.Printf("Redis restarted while the Sentinels name this pod master: SENTINEL FAILOVER: %v", err)
		if noReplicaToPromote(err) {
			// The Sentinels know no replica to promote (the operator
			// reset them while this Redis listed none): nobody would
			// ever be master. After a process crash this Redis's
			// append-only file holds every write it acknowledged
			// (Redis writes it before it answers or replicates), and
			// the replicas still follow this address: take the role
			// back.
			err := a.redis.Do(ctx, "REPLICAOF", "NO", "ONE").Err()
			log.Printf("no replica to promote: this Redis takes the master role back (REPLICAOF NO ONE): %v", err)
		}
	}
	a.follow(ctx, r, fresh)
	a.recoverOrphan(ctx, r, fresh)
	if !d.master {
		if n, err := killTLSClients(ctx, a.redis, a.cfg.tlsPort); err == nil && n > 0 {
			log.Printf("closed %d client connection(s) on the TLS port: this pod is not the master (role %q)", n, r.role)
		}
	}
	a.label(ctx, d.label())
}

// label writes the pod's role label when it changed, and again every 30 s
// in case someone else changed it.
func (a *agent) label(ctx context.Context, want string) {
	if want == a.labelled && time.Since(a.labelledAt) < 30*time.Second {
		return
	}
	if err := a.patch(ctx, want); err != nil {
		log.Printf("labelling the pod %s=%s: %v", a.cfg.label, want, err)
		return
	}
	if want != a.labelled {
		log.Printf("pod labelled %s=%s", a.cfg.label, want)
	}
	a.labelled, a.labelledAt = want, time.Now()
}

func (a *agent) setMinReplicas(ctx context.Context, n int) {
	cur, err := a.redis.ConfigGet(ctx, "min-replicas-to-write").Result()
	if err != nil {
		return
	}
	if cur["min-replicas-to-write"] == strconv.Itoa(n) {
		return
	}
	if err := a.redis.ConfigSet(ctx, "min-replicas-to-write", strconv.Itoa(n)).Err(); err != nil {
		log.Printf("setting min-replicas-to-write %d: %v", n, err)
		return
	}
	log.Printf("min-replicas-to-write %d (was %s)", n, cur["min-replicas-to-write"])
}

func (a *agent) sentinelMaster(ctx context.Context) (string, error) {
	addr, err := a.sentinel.GetMasterAddrByName(ctx, a.cfg.masterName).Result()
	if err != nil {
		return "", err
	}
	if len(addr) != 2 {
		return "", fmt.Errorf("the Sentinel answered %v", addr)
	}
	return addr[0], nil
}

// handOver runs when the pod is being deleted. A master with replicas
// pauses writes and fences itself (no write is acknowledged from here on),
// closes its clients' connections,
// waits until every replica has acknowledged its replication offset (all
// it ever acknowledged to a client), then asks the Sentinels for a
// failover and waits until they name another master.
func (a *agent) handOver(ctx context.Context) {
	r, err := readRole(ctx, a.redis)
	if err != nil || r.role != "master" {
		return
	}
	if len(r.replicas) == 0 {
		// Nothing to fail over to (dev-lite, or a standard master whose
		// replica is away): Redis's own shutdown saves and stops.
		log.Printf("shutdown: master without replicas, no failover possible")
		return
	}
	start := time.Now()
	// Pause every write, client writes and the replication stream alike
	// (Sentinel's hello PUBLISHes would otherwise go on): the replicas
	// stop at the very offset the promoted one has, so the others follow
	// it with a partial resync instead of a full one. The paused writes
	// are never answered: their connections are closed below. The fence
	// keeps them refused should the pause end before the pod does.
	if err := a.redis.Do(ctx, "CLIENT", "PAUSE", "30000", "WRITE").Err(); err != nil {
		log.Printf("shutdown: pausing writes: %v", err)
	}
	if err := a.redis.ConfigSet(ctx, "min-replicas-to-write", strconv.Itoa(fenced)).Err(); err != nil {
		log.Printf("shutdown: fencing the master: %v", err)
	}
	// Clients must not come back here through the Service.
	a.labelled = ""
	a.label(ctx, "replica")
	n, _ := killTLSClients(ctx, a.redis, a.cfg.tlsPort)
	r, err = readRole(ctx, a.redis)
	if err != nil {
		log.Printf("shutdown: %v", err)
		return
	}
	target := r.offset
	// Replicas report their offset once a second (REPLCONF ACK).
	for {
		r, err = readRole(ctx, a.redis)
		if err == nil && r.caughtUp(target) {
			break
		}
		if ctx.Err() != nil || time.Since(start) > 5*time.Second {
			log.Printf("shutdown: replicas not caught up with offset %d: %+v", target, r.replicas)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.sentinel.Failover(ctx, a.cfg.masterName).Err(); err != nil {
		log.Printf("shutdown: SENTINEL FAILOVER: %v", err)
	}
	for ctx.Err() == nil {
		if ip, err := a.sentinelMaster(ctx); err == nil && ip != a.cfg.podIP {
			log.Printf("shutdown: fenced (%d client connection(s) closed), replicas at offset %d, Sentinels name %s after %s",
				n, target, ip, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// role is what Redis's ROLE answers.
type role struct {
	role       string // master, slave, "" when Redis did not answer
	offset     int64  // a master's replication offset, or what a replica processed
	replicas   []int64
	masterHost string // a replica's master
}

func (r role) caughtUp(offset int64) bool {
	if len(r.replicas) == 0 {
		return false
	}
	for _, o := range r.replicas {
		if o < offset {
			return false
		}
	}
	return true
}

func readRole(ctx context.Context, c *redis.Client) (role, error) {
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return role{}, err
	}
	return parseRole(v)
}

// parseRole reads ROLE's answer: a master's is ["master", offset,
// [[ip, port, offset], ...]] (only replicas online), a replica's starts
// with "slave".
func parseRole(v []any) (role, error) {
	if len(v) == 0 {
		return role{}, errors.New("empty ROLE answer")
	}
	name, _ := v[0].(string)
	r := role{role: name}
	if name == "slave" && len(v) > 1 {
		r.masterHost, _ = v[1].(string)
	}
	if name == "slave" && len(v) > 4 {
		// The replication offset it has processed (-1 before any sync).
		r.offset, _ = v[4].(int64)
	}
	if name != "master" {
		return r, nil
	}
	if len(v) < 3 {
		return role{}, fmt.Errorf("short ROLE answer %v", v)
	}
	r.offset, _ = v[1].(int64)
	list, _ := v[2].([]any)
	for _, e := range list {
		f, _ := e.([]any)
		if len(f) < 3 {
			continue
		}
		s, _ := f[2].(string)
		o, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		r.replicas = append(r.replicas, o)
	}
	return r, nil
}

// follow makes a replica that follows another master than the one the
// Sentinels name (for a second or more) a replica of theirs. The Sentinels
// do the same, but after a forced deletion they were seen to take 10 s and
// more to reconfigure the remaining replica, and on ha the new master
// refuses writes until a replica is back; a restarted replica waits for
// the operator's 30 s resync otherwise.
func (a *agent) follow(ctx context.Context, r role, fresh bool) {
	want := a.sentinelSays
	if !strays(r, want, a.cfg.podIP, fresh) {
		a.strayingAt = time.Time{}
		return
	}
	if a.strayingAt.IsZero() {
		a.strayingAt = time.Now()
	}
	if time.Since(a.strayingAt) < time.Second || time.Since(a.followAt) < 5*time.Second {
		return
	}
	// Only away from a master that does not work (gone, restarted, or a
	// replica now) and towards one that answers as master: a Sentinel
	// that has not yet heard of a promotion names the old master.
	if r.masterHost != "127.0.0.1" && a.answersAsMaster(ctx, r.masterHost) {
		return
	}
	if !a.answersAsMaster(ctx, want) {
		return
	}
	a.followAt = time.Now()
	err := a.redis.Do(ctx, "REPLICAOF", want, a.cfg.redisPort()).Err()
	log.Printf("this replica followed %s, the Sentinels name %s: REPLICAOF %s: %v", r.masterHost, want, want, err)
}

// strays says whether a replica follows another master than the one the
// Sentinels name (a fresh answer naming a pod, not the operator's initial
// 127.0.0.1, and not this pod).
func strays(r role, named, podIP string, fresh bool) bool {
	return fresh && r.role == "slave" && named != "" && named != podIP &&
		named != "127.0.0.1" && r.masterHost != named
}

// answersAsMaster says whether the Redis at host answers as master.
func (a *agent) answersAsMaster(ctx context.Context, host string) bool {
	r, err := a.roleOf(ctx, host)
	return err == nil && r.role == "master"
}

func (c config) redisPort() string {
	if i := strings.LastIndex(c.redisAddr, ":"); i >= 0 {
		return c.redisAddr[i+1:]
	}
	return "6379"
}

// noReplicaToPromote says whether SENTINEL FAILOVER failed because the
// Sentinels know no replica they could promote.
func noReplicaToPromote(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOGOODSLAVE")
}

// restartedMaster says whether Redis answers as a replica without a master
// (the operator's redis.conf starts every Redis as "slaveof 127.0.0.1")
// while the Sentinels name this pod the master: the master's Redis
// restarted.
func restartedMaster(r role, namedMe bool) bool {
	return namedMe && r.role == "slave" && (r.masterHost == "127.0.0.1" || r.masterHost == "localhost")
}

// decision is what the agent makes of the roles.
type decision struct {
	master      bool // label master, keep the TLS clients
	minReplicas int  // min-replicas-to-write, for a Redis that is master
}

func (d decision) label() string {
	if d.master {
		return "master"
	}
	return "replica"
}

// decide: only a master the Sentinels name takes clients; a master they
// do not name (the old one after a promotion) is fenced.
func decide(r role, namedMe bool, minReplicas int, aloneOK bool) decision {
	if r.role != "master" {
		// A replica keeps the plan's setting for the moment it is
		// promoted: until the agent sees the Sentinels name it, a
		// promoted replica without replicas refuses writes.
		return decision{minReplicas: minReplicas}
	}
	if !namedMe {
		return decision{minReplicas: fenced}
	}
	if aloneOK && len(r.replicas) == 0 {
		return decision{master: true, minReplicas: 0}
	}
	return decision{master: true, minReplicas: minReplicas}
}

// killTLSClients closes every client connection to the TLS port (clients
// of the binding; the operator, the Sentinels, replication and this agent
// use the plaintext port) and says how many.
func killTLSClients(ctx context.Context, c *redis.Client, port string) (int, error) {
	list, err := c.ClientList(ctx).Result()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range tlsClientIDs(list, port) {
		if err := c.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err == nil {
			n++
		}
	}
	return n, nil
}

// tlsClientIDs picks from CLIENT LIST the ids of connections whose local
// address is on port.
func tlsClientIDs(list, port string) []string {
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		var id, laddr string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "laddr="); ok {
				laddr = v
			}
		}
		if id != "" && strings.HasSuffix(laddr, ":"+port) {
			ids = append(ids, id)
		}
	}
	return ids
}
