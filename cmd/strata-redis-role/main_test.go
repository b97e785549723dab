package main

import (
	"errors"
	"reflect"
	"testing"
)

func TestDecide(t *testing.T) {
	master := role{role: "master", replicas: []int64{10}}
	alone := role{role: "master"}
	for _, c := range []struct {
		name    string
		r       role
		namedMe bool
		aloneOK bool
		want    decision
	}{
		{"master named by the Sentinels", master, true, false, decision{master: true, minReplicas: 1}},
		{"old master after a promotion is fenced", master, false, false, decision{minReplicas: fenced}},
		{"old master without replicas is fenced even where alone is ok", alone, false, true, decision{minReplicas: fenced}},
		{"ha master without replicas refuses writes", alone, true, false, decision{master: true, minReplicas: 1}},
		{"standard master without replicas writes alone", alone, true, true, decision{master: true, minReplicas: 0}},
		{"replica", role{role: "slave"}, true, true, decision{minReplicas: 1}},
		{"Redis not answering", role{}, true, true, decision{minReplicas: 1}},
	} {
		if got := decide(c.r, c.namedMe, 1, c.aloneOK); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	r, err := parseRole([]any{"master", int64(3129659), []any{
		[]any{"10.0.0.7", "6379", "3129242"}, []any{"10.0.0.8", "6379", "3129543"},
	}})
	if err != nil || r.role != "master" || r.offset != 3129659 || !reflect.DeepEqual(r.replicas, []int64{3129242, 3129543}) {
		t.Fatalf("%+v %v", r, err)
	}
	if r.caughtUp(3129543) || !r.caughtUp(3129242) {
		t.Errorf("caughtUp wrong for %+v", r.replicas)
	}
	if (role{role: "master"}).caughtUp(0) {
		t.Error("a master without replicas is not caught up: there is nothing to fail over to")
	}
	r, err = parseRole([]any{"slave", "10.0.0.6", int64(6379), "connected", int64(3167038)})
	if err != nil || r.role != "slave" || r.masterHost != "10.0.0.6" || r.offset != 3167038 {
		t.Fatalf("%+v %v", r, err)
	}
}

// A master's Redis that restarted answers as the replica of nothing the
// operator's redis.conf makes it; the agent then asks for a failover.
func TestRestartedMaster(t *testing.T) {
	restarted := role{role: "slave", masterHost: "127.0.0.1"}
	if !restartedMaster(restarted, true) {
		t.Error("a restarted master the Sentinels name is not recognised")
	}
	if restartedMaster(restarted, false) {
		t.Error("a fresh pod the Sentinels do not name must not cause a failover")
	}
	if restartedMaster(role{role: "slave", masterHost: "10.0.0.6"}, true) {
		t.Error("a replica of a real master must not cause a failover")
	}
	if restartedMaster(role{role: "master"}, true) {
		t.Error("a master must not cause a failover")
	}
}

func TestTLSClientIDs(t *testing.T) {
	list := "id=3 addr=10.0.0.9:40000 laddr=10.0.0.5:6380 fd=8 name= cmd=rpush\n" +
		"id=4 addr=127.0.0.1:5000 laddr=127.0.0.1:6379 fd=9 name= cmd=client|list\n" +
		"id=5 addr=10.0.0.6:5000 laddr=10.0.0.5:6379 fd=10 name=sentinel cmd=ping\n" +
		"id=7 addr=10.0.0.9:40002 laddr=10.0.0.5:6380 fd=11 name= cmd=get\n"
	if got := tlsClientIDs(list, "6380"); !reflect.DeepEqual(got, []string{"3", "7"}) {
		t.Errorf("%v, want [3 7]", got)
	}
}

func TestStrays(t *testing.T) {
	for _, c := range []struct {
		name  string
		r     role
		named string
		fresh bool
		want  bool
	}{
		{"follows the named master", role{role: "slave", masterHost: "10.0.0.7"}, "10.0.0.7", true, false},
		{"follows the old master", role{role: "slave", masterHost: "10.0.0.6"}, "10.0.0.7", true, true},
		{"restarted replica", role{role: "slave", masterHost: "127.0.0.1"}, "10.0.0.7", true, true},
		{"stale Sentinel answer", role{role: "slave", masterHost: "10.0.0.6"}, "10.0.0.7", false, false},
		{"instance still bootstrapping", role{role: "slave", masterHost: "127.0.0.1"}, "127.0.0.1", true, false},
		{"this pod is named (a failover in progress)", role{role: "slave", masterHost: "10.0.0.6"}, "10.0.0.5", true, false},
		{"a master", role{role: "master"}, "10.0.0.7", true, false},
	} {
		if got := strays(c.r, c.named, "10.0.0.5", c.fresh); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNoReplicaToPromote(t *testing.T) {
	if !noReplicaToPromote(redisErr("NOGOODSLAVE No suitable replica to promote")) {
		t.Error("NOGOODSLAVE not recognised")
	}
	for _, err := range []error{nil, redisErr("INPROG Failover already in progress"), errors.New("dial tcp: i/o timeout")} {
		if noReplicaToPromote(err) {
			t.Errorf("%v taken for NOGOODSLAVE", err)
		}
	}
}

// redisErr is an error reply as go-redis returns it (its message is the
// server's line).
type redisErr string

func (e redisErr) Error() string { return string(e) }
