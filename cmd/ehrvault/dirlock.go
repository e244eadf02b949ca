package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFileName is the lock that one process holds while it writes records
// to a data directory: serve, import and demo. Caches in the server (read
// cache, token cache) and, later, the audit log's tree assume one writer.
const lockFileName = "ehrvault.lock"

// errLocked is returned when another process holds the data directory.
var errLocked = errors.New("the data directory is in use by another ehrvault process")

// dirLock is a held lock on a data directory.
type dirLock struct{ f *os.File }

// lockDir takes the lock of dir without waiting. The lock is an advisory
// flock(2): it dies with the process, so a crash never leaves it behind.
// The file holds the pid of its holder, for the error message of the next.
func lockDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = fmt.Sprintf(" (pid %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, withHint(fmt.Errorf("%w%s", errLocked, holder),
				"stop the server first, or load the files through its API: POST each Bundle to /fhir")
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &dirLock{f: f}, nil
}

// unlock releases the lock.
func (l *dirLock) unlock() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
