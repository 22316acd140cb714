package node

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// faultFS is the real file system with one operation failing.
type faultFS struct {
	osFS
	failWrite, failSync, failClose, failRename, failSyncDir bool
	shortWrite                                              bool // write half the data, then fail
}

var errNoSpace = syscall.ENOSPC

func (f faultFS) Create(name string) (syncFile, error) {
	file, err := f.osFS.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file.(*os.File), fs: f}, nil
}

func (f faultFS) Rename(oldpath, newpath string) error {
	if f.failRename {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: errNoSpace}
	}
	return f.osFS.Rename(oldpath, newpath)
}

func (f faultFS) SyncDir(dir string) error {
	if f.failSyncDir {
		return &os.PathError{Op: "sync", Path: dir, Err: syscall.EIO}
	}
	return f.osFS.SyncDir(dir)
}

type faultFile struct {
	*os.File
	fs faultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	switch {
	case f.fs.shortWrite:
		n, _ := f.File.Write(p[:len(p)/2])
		return n, errNoSpace
	case f.fs.failWrite:
		return 0, errNoSpace
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if f.fs.failSync {
		return errNoSpace
	}
	return f.File.Sync()
}

func (f *faultFile) Close() error {
	err := f.File.Close()
	if f.fs.failClose {
		return errNoSpace
	}
	return err
}

func TestWriteFileAtomicReportsFailures(t *testing.T) {
	tests := []struct {
		name    string
		fs      faultFS
		errIs   error
		written bool // the new content is in place despite the error
	}{
		{"write fails", faultFS{failWrite: true}, errNoSpace, false},
		{"short write", faultFS{shortWrite: true}, errNoSpace, false},
		{"fsync fails", faultFS{failSync: true}, errNoSpace, false},
		{"close fails", faultFS{failClose: true}, errNoSpace, false},
		{"rename fails", faultFS{failRename: true}, errNoSpace, false},
		{"directory fsync fails", faultFS{failSyncDir: true}, syscall.EIO, true},
	}
	for _, tt := range tests {
		for _, existing := range []bool{false, true} {
			name := tt.name + "/new file"
			if existing {
				name = tt.name + "/over an existing file"
			}
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), NodeTokenFile)
				if existing {
					if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				err := writeFileAtomicFS(tt.fs, path, []byte("new-token\n"))
				if !errors.Is(err, tt.errIs) {
					t.Fatalf("writeFileAtomicFS = %v, want an error wrapping %v", err, tt.errIs)
				}
				b, rerr := os.ReadFile(path)
				switch {
				case tt.written:
					if string(b) != "new-token\n" {
						t.Fatalf("target holds %q, %v; want the complete new content", b, rerr)
					}
				case existing:
					if string(b) != "old\n" {
						t.Fatalf("target holds %q, %v; want the old content untouched", b, rerr)
					}
				case !errors.Is(rerr, os.ErrNotExist):
					t.Fatalf("target holds %q, %v; want no file", b, rerr)
				}
				if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("temporary file left behind: %v", err)
				}
			})
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), NodeTokenFile)
	for _, content := range []string{"first\n", "second\n"} {
		if err := writeFileAtomic(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
		}
	}
}

// A data dir left with an empty secret or node id (by a failed write before
// failures were reported) gets a new one instead of an empty one.
func TestEmptyFilesAreWrittenAgain(t *testing.T) {
	dir := t.TempDir()
	tokPath := filepath.Join(dir, NodeTokenFile)
	if err := os.WriteFile(tokPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := readOrCreateSecret(tokPath)
	if err != nil || tok == "" {
		t.Fatalf("readOrCreateSecret = %q, %v; want a new token", tok, err)
	}
	if again, err := readOrCreateSecret(tokPath); err != nil || again != tok {
		t.Fatalf("second read = %q, %v; want %q", again, err, tok)
	}
	if err := os.WriteFile(filepath.Join(dir, NodeIDFile), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := resolveNodeID(dir, "n1")
	if err != nil || id != "n1" {
		t.Fatalf("resolveNodeID = %q, %v; want n1", id, err)
	}
	if again, err := resolveNodeID(dir, ""); err != nil || again != "n1" {
		t.Fatalf("persisted id = %q, %v; want n1", again, err)
	}
}
