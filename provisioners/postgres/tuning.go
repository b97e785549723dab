package postgres

import (
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/strata-dev/strata/provisioners"
)

// Tuning is the part of spec.postgresql.parameters derived from the
// instance's resources (its CPU and memory limit and its volume), so that
// an instance resized with resources.memory or storage_gb is also
// configured for its new size. Left out, PostgreSQL keeps its compiled-in
// defaults whatever the pod has: 128MB of shared_buffers in a 2Gi or a
// 64Gi pod, and a planner that assumes 4GB are cached in a 512Mi one.
//
// Memory (the pod's limit, which also bounds the page cache it can use):
//   - shared_buffers: a quarter, the usual balance between PostgreSQL's
//     own cache and the page cache, sorts and connections (the same 25 %
//     strata-advisor recommends); at least 16MB.
//   - effective_cache_size: three quarters, what the planner may assume
//     is cached (shared_buffers and the page cache together).
//   - work_mem: what is left beside shared_buffers, shared out between
//     max_connections sessions with two sorts or hashes each, never below
//     PostgreSQL's 4MB default: shared_buffers + work_mem × max_connections
//     stays within the limit (strata-advisor's OOM rule) for every plan.
//   - maintenance_work_mem (VACUUM, CREATE INDEX): a sixteenth, between
//     PostgreSQL's 64MB default and 2GB.
//
// WAL (the volume holds the data and pg_wal): max_wal_size, the WAL
// between two checkpoints, is an eighth of the volume, between 128MB and
// 16GB: more than PostgreSQL's 1GB default on the larger volumes, so a
// write burst does not force a checkpoint (and a full-page image of every
// page written after it) every few seconds, and less on a 1Gi dev-lite
// volume, which the 1GB default (beside CloudNativePG's 512MB
// wal_keep_size) could fill. min_wal_size, the WAL kept for reuse, is a
// quarter of that.
//
// CPU: parallel query gets as many workers as the pod has cores (at least
// 2), half of them for one query (at least 1): CloudNativePG's 32 parallel
// workers would queue on a pod's one or two cores.
//
// wal_buffers is left to PostgreSQL, which derives it from shared_buffers
// (a thirty-second, at most 16MB).
func Tuning(s Settings, maxConnections int) (map[string]string, error) {
	mem, err := resource.ParseQuantity(s.Memory)
	if err != nil {
		return nil, provisioners.ParamErrorf("parameters.resources.memory", "%q is not a quantity: %v", s.Memory, err)
	}
	cpu, err := resource.ParseQuantity(s.CPU)
	if err != nil {
		return nil, provisioners.ParamErrorf("parameters.resources.cpu", "%q is not a quantity: %v", s.CPU, err)
	}
	if maxConnections < 1 {
		return nil, fmt.Errorf("max_connections %d: the plan must allow at least one connection", maxConnections)
	}
	const mb = 1024 // in kB, PostgreSQL's unit for the memory settings
	memKB := mem.Value() / 1024
	sharedBuffers := max(memKB/4, 16*mb)
	workMem := max((memKB-sharedBuffers)/int64(2*maxConnections), 4*mb)
	maintenance := min(max(memKB/16, 64*mb), 2048*mb)
	maxWAL := min(max(int64(s.StorageGB)*1024*mb/8, 128*mb), 16*1024*mb)
	cores := max((cpu.MilliValue()+999)/1000, 1)
	workers := max(cores, 2)
	perQuery := max(cores/2, 1)
	return map[string]string{
		"shared_buffers":                   kB(sharedBuffers),
		"effective_cache_size":             kB(memKB * 3 / 4),
		"work_mem":                         kB(workMem),
		"maintenance_work_mem":             kB(maintenance),
		"max_wal_size":                     kB(maxWAL),
		"min_wal_size":                     kB(maxWAL / 4),
		"max_parallel_workers":             strconv.FormatInt(workers, 10),
		"max_parallel_workers_per_gather":  strconv.FormatInt(perQuery, 10),
		"max_parallel_maintenance_workers": strconv.FormatInt(perQuery, 10),
	}, nil
}

// kB writes a size in kB with PostgreSQL's units: MB when it is whole
// megabytes, kB otherwise.
func kB(v int64) string {
	if v%1024 == 0 {
		return strconv.FormatInt(v/1024, 10) + "MB"
	}
	return strconv.FormatInt(v, 10) + "kB"
}
