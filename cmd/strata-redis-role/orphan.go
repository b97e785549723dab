package main

import (
	"context"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// An orphaned instance: the Sentinels name a master whose pod is gone (a
// forced deletion, or a node lost, replaced it by a pod with another
// address), they know no replica they could promote, and no Redis of the
// instance is master. It happens when the operator's periodic SENTINEL
// RESET (it resets a Sentinel that lists more replicas than the instance
// has, the address of a pod replaced earlier) lands just as the master
// goes: a reset Sentinel relearns the replicas from the master's INFO,
// and there is no master left to ask. The Sentinels then try to fail over
// for ever (-failover-abort-no-good-slave), and the redis-operator 1.2.4
// waits "until failover or fix manually" as long as the Sentinels have a
// quorum and the replicas follow an address that is not 127.0.0.1: no
// master, no writes, until someone steps in.
//
// The agents step in. Once the state has lasted orphanGrace (the
// Sentinels' own failover had its chance), the replica that holds the
// most of the lost master's stream (the largest replication offset among
// the replicas following it; on a tie, the pod with the smallest
// ordinal) makes its Redis master (REPLICAOF NO ONE). Every agent sees the
// same replicas and offsets (nothing replicates any more) and so elects
// the same one. The new master stays fenced (decide) until the Sentinels
// name it: the operator's next check finds exactly one master, makes the
// other Redis its replicas and points every Sentinel at it.

// orphanGrace is how long the orphaned state must last before an agent
// promotes its Redis: longer than the Sentinels' down-after and a failover
// attempt, shorter than the operator's resync.
const orphanGrace = 20 * time.Second

// orphanCheckEvery spaces the checks: each asks the API server and every
// Redis of the instance.
const orphanCheckEvery = 2 * time.Second

// peer is another Redis pod of the instance as the agent sees it.
type peer struct {
	name string
	ip   string
	role role // what its Redis answered; role "" when it did not
}

// heir elects the replica that takes over an orphaned instance: among the
// peers (this pod included) whose Redis follows the lost master, the
// largest offset, then the smallest ordinal. "" when none follows it.
func heir(peers []peer, lost string) string {
	best := -1
	for i, p := range peers {
		if p.role.role != "slave" || p.role.masterHost != lost {
			continue
		}
		if best < 0 || p.role.offset > peers[best].role.offset ||
			p.role.offset == peers[best].role.offset && ordinal(p.name) < ordinal(peers[best].name) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return peers[best].name
}

// orphaned says whether the peers show an orphaned instance: the lost
// master's address is no pod's, and every Redis that has an address
// answered, none as master. A Redis that did not answer could be a master,
// or the heir: electing without it could make two masters.
func orphaned(peers []peer, lost string) bool {
	for _, p := range peers {
		if p.ip == lost || p.role.role == "master" || p.ip != "" && p.role.role == "" {
			return false
		}
	}
	return true
}

// ordinal is a StatefulSet pod's ordinal (the number after its last "-").
func ordinal(pod string) int {
	n, err := strconv.Atoi(pod[strings.LastIndex(pod, "-")+1:])
	if err != nil {
		return int(^uint(0) >> 1)
	}
	return n
}

// recoverOrphan runs the check on a replica that follows the master the
// Sentinels name (r), at most every orphanCheckEvery.
func (a *agent) recoverOrphan(ctx context.Context, r role, fresh bool) {
	lost := a.sentinelSays
	if !fresh || r.role != "slave" || lost == "" || lost == a.cfg.podIP || r.masterHost != lost {
		a.orphanSince = time.Time{}
		return
	}
	if time.Since(a.orphanCheckedAt) < orphanCheckEvery {
		return
	}
	a.orphanCheckedAt = time.Now()
	if a.answersAsMaster(ctx, lost) {
		a.orphanSince = time.Time{}
		return
	}
	peers, err := a.peers(ctx, r)
	if err != nil || !orphaned(peers, lost) {
		a.orphanSince = time.Time{}
		return
	}
	if a.orphanSince.IsZero() {
		a.orphanSince = time.Now()
		log.Printf("the Sentinels name %s, whose pod is gone, and no Redis is master: if they cannot fail over within %s, a replica takes over", lost, orphanGrace)
	}
	if time.Since(a.orphanSince) < orphanGrace {
		return
	}
	// Only now ask whether the Sentinels can fail over themselves (their
	// failover after a deletion is over well within the grace): they
	// answer NOGOODSLAVE when they know no replica to promote.
	if time.Since(a.failoverAt) < 10*time.Second {
		return
	}
	a.failoverAt = time.Now()
	if err := a.sentinel.Failover(ctx, a.cfg.masterName).Err(); !noReplicaToPromote(err) {
		log.Printf("orphaned for %s: SENTINEL FAILOVER: %v", time.Since(a.orphanSince).Round(time.Second), err)
		return
	}
	if winner := heir(peers, lost); winner != a.cfg.podName {
		return
	}
	err = a.redis.Do(ctx, "REPLICAOF", "NO", "ONE").Err()
	log.Printf("orphaned for %s: this Redis holds the most of %s's stream (offset %d) and becomes master (REPLICAOF NO ONE), fenced until the Sentinels name it: %v",
		time.Since(a.orphanSince).Round(time.Second), lost, r.offset, err)
	a.orphanSince = time.Time{}
}

// peers reads the instance's Redis pods (their names from -peers, their
// addresses from the API server) and asks each Redis its role; this pod's
// is r.
func (a *agent) peers(ctx context.Context, r role) ([]peer, error) {
	var out []peer
	for _, name := range a.cfg.peers {
		if name == a.cfg.podName {
			out = append(out, peer{name: name, ip: a.cfg.podIP, role: r})
			continue
		}
		ip, err := a.podIP(ctx, name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		p := peer{name: name, ip: ip}
		if ip != "" {
			p.role, _ = a.roleOf(ctx, ip)
		}
		out = append(out, p)
	}
	return out, nil
}

// roleOf asks the Redis at host (the instance's plaintext port, the
// password of the instance) for its role.
func (a *agent) roleOf(ctx context.Context, host string) (role, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	c := redis.NewClient(&redis.Options{
		Addr: host + ":" + a.cfg.redisPort(), Password: a.redis.Options().Password,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1, PoolSize: 1,
	})
	defer c.Close()
	return readRole(ctx, c)
}
