package model

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// PoolPrefix starts every warm pool's job name.
const PoolPrefix = "nimbus-pool-"

// Limits of a warm pool.
const (
	MinPoolSize = 1
	MaxPoolSize = 100
)

// PoolRuntimes are the runtimes a warm pool can hold: those whose handler
// the host starts from a package (not http, whose server is the user's).
var PoolRuntimes = []string{RuntimeProvided, RuntimePython, RuntimeNode}

// Pool is a warm pool's specification: Size generic instances of one
// runtime and memory class, waiting to be specialised for a function.
type Pool struct {
	Runtime  string
	MemoryMB int
	Size     int
}

// PoolJobID names a pool's job (and its Consul service): one pool per
// runtime and memory class.
func PoolJobID(runtime string, memoryMB int) string {
	return PoolPrefix + runtime + "-" + strconv.Itoa(memoryMB)
}

// JobID is the pool's job.
func (p Pool) JobID() string { return PoolJobID(p.Runtime, p.MemoryMB) }

// Validate reports every invalid setting.
func (p Pool) Validate() error {
	var errs []error
	if !slices.Contains(PoolRuntimes, p.Runtime) {
		errs = append(errs, &FieldError{"runtime", fmt.Sprintf("%q cannot be pooled: use one of %v (an http function runs its own server)", p.Runtime, PoolRuntimes)})
	}
	if p.MemoryMB < MinMemoryMB || p.MemoryMB > MaxMemoryMB {
		errs = append(errs, &FieldError{"memory_mb", fmt.Sprintf("%d is out of range: use %d to %d, at least the memory_mb of the functions the pool should serve", p.MemoryMB, MinMemoryMB, MaxMemoryMB)})
	}
	if p.Size < MinPoolSize || p.Size > MaxPoolSize {
		errs = append(errs, &FieldError{"size", fmt.Sprintf("%d is out of range: use %d to %d (remove the pool to have none)", p.Size, MinPoolSize, MaxPoolSize)})
	}
	return errors.Join(errs...)
}
