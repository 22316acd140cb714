package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/hookswitch/hookswitch/fsm"
)

// Format and Version identify the file; Read accepts versions up to
// Version.
const (
	Format  = "hookswitch-snapshot"
	Version = 1
	// MaxLine bounds one record line (a subscription with long filters
	// stays far below it).
	MaxLine = 4 << 20
)

// Errors of Read. Match with errors.Is.
var (
	ErrFormat    = errors.New("backup: not a hookswitch snapshot file")
	ErrVersion   = errors.New("backup: snapshot file of a newer version")
	ErrTruncated = errors.New("backup: snapshot file is truncated")
	ErrChecksum  = errors.New("backup: snapshot file checksum mismatch")
	ErrInvalid   = errors.New("backup: snapshot file is inconsistent")
)

// Header is the first line of the file.
type Header struct {
	Format     string `json:"format"`
	Version    int    `json:"version"`
	CreatedMs  int64  `json:"created-ms"`
	SourceNode string `json:"source-node,omitempty"`
	// Applied is the raft index of the state saved.
	Applied uint64 `json:"applied"`
	Subs    int    `json:"subs"`
	Tokens  int    `json:"tokens"`
	Nodes   int    `json:"nodes"`
}

// Records is the number of record lines the header announces.
func (h Header) Records() int { return h.Subs + h.Tokens + h.Nodes }

// Snapshot is a file's content.
type Snapshot struct {
	Header Header
	Subs   []fsm.Subscription
	Tokens []fsm.Token
	Nodes  []fsm.Node
}

// FromState copies st (call it under the FSM's read lock) into a snapshot
// with the header's counts filled in.
func FromState(st *fsm.State, h Header) *Snapshot {
	s := &Snapshot{}
	for _, sub := range st.SortedSubs() {
		s.Subs = append(s.Subs, *sub.Clone())
	}
	for _, t := range st.SortedTokens() {
		s.Tokens = append(s.Tokens, *t)
	}
	for _, n := range st.SortedNodes() {
		s.Nodes = append(s.Nodes, *n)
	}
	h.Format, h.Version = Format, Version
	h.Subs, h.Tokens, h.Nodes = len(s.Subs), len(s.Tokens), len(s.Nodes)
	s.Header = h
	return s
}

type line struct {
	Sub   *fsm.Subscription `json:"sub,omitempty"`
	Token *fsm.Token        `json:"token,omitempty"`
	Node  *fsm.Node         `json:"node,omitempty"`
	// The end line.
	End     bool   `json:"end,omitempty"`
	Records int    `json:"records,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
}

// Write writes s to w in the file format.
func Write(w io.Writer, s *Snapshot) error {
	h := sha256.New()
	bw := bufio.NewWriter(w)
	out := io.MultiWriter(bw, h)
	put := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("backup: encode: %w", err)
		}
		_, err = out.Write(append(b, '\n'))
		return err
	}
	if err := put(s.Header); err != nil {
		return err
	}
	for i := range s.Subs {
		if err := put(line{Sub: &s.Subs[i]}); err != nil {
			return err
		}
	}
	for i := range s.Tokens {
		if err := put(line{Token: &s.Tokens[i]}); err != nil {
			return err
		}
	}
	for i := range s.Nodes {
		if err := put(line{Node: &s.Nodes[i]}); err != nil {
			return err
		}
	}
	end, err := json.Marshal(line{End: true, Records: s.Header.Records(), SHA256: hex.EncodeToString(h.Sum(nil))})
	if err != nil {
		return err
	}
	if _, err := bw.Write(append(end, '\n')); err != nil {
		return err
	}
	return bw.Flush()
}

// Progress is told how many records of the header's total were read.
type Progress func(done, total int)

// Read parses and checks a snapshot file. progress, when not nil, is
// called after the header and every 1000 records and at the end.
func Read(r io.Reader, progress Progress) (*Snapshot, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	sum := sha256.New()
	first, err := readLine(br, sum)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, ErrTruncated) || errors.Is(err, ErrInvalid) {
			return nil, fmt.Errorf("%w: no header line", ErrFormat)
		}
		return nil, err
	}
	s := &Snapshot{}
	if err := json.Unmarshal(first, &s.Header); err != nil || s.Header.Format != Format {
		return nil, ErrFormat
	}
	h := s.Header
	switch {
	case h.Version > Version:
		return nil, fmt.Errorf("%w: version %d; this binary reads up to %d", ErrVersion, h.Version, Version)
	case h.Version < 1 || h.Subs < 0 || h.Tokens < 0 || h.Nodes < 0:
		return nil, fmt.Errorf("%w: bad header", ErrFormat)
	}
	total := h.Records()
	if progress != nil {
		progress(0, total)
	}
	done := 0
	for {
		before := sum.Sum(nil)
		b, err := readLine(br, sum)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: no end line after %d records", ErrTruncated, done)
		}
		if err != nil {
			return nil, err
		}
		var l line
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", ErrInvalid, done+1, err)
		}
		switch {
		case l.End:
			if l.SHA256 != hex.EncodeToString(before) {
				return nil, ErrChecksum
			}
			if l.Records != done || len(s.Subs) != h.Subs || len(s.Tokens) != h.Tokens || len(s.Nodes) != h.Nodes {
				return nil, fmt.Errorf("%w: %d subscriptions, %d tokens, %d nodes; the header says %d, %d, %d",
					ErrInvalid, len(s.Subs), len(s.Tokens), len(s.Nodes), h.Subs, h.Tokens, h.Nodes)
			}
			if err := s.check(); err != nil {
				return nil, err
			}
			if progress != nil {
				progress(done, total)
			}
			return s, nil
		case l.Sub != nil:
			s.Subs = append(s.Subs, *l.Sub)
		case l.Token != nil:
			s.Tokens = append(s.Tokens, *l.Token)
		case l.Node != nil:
			s.Nodes = append(s.Nodes, *l.Node)
		default:
			return nil, fmt.Errorf("%w: record %d is empty", ErrInvalid, done+1)
		}
		done++
		if done > total {
			return nil, fmt.Errorf("%w: more records than the header's %d", ErrInvalid, total)
		}
		if progress != nil && done%1000 == 0 {
			progress(done, total)
		}
	}
}

// readLine returns the next line without its newline, adding it (with the
// newline) to sum. A last line without a newline is a truncation.
func readLine(br *bufio.Reader, sum hash.Hash) ([]byte, error) {
	var buf []byte
	for {
		part, err := br.ReadSlice('\n')
		buf = append(buf, part...)
		if len(buf) > MaxLine {
			return nil, fmt.Errorf("%w: a line is longer than %d bytes", ErrInvalid, MaxLine)
		}
		switch {
		case err == nil:
			sum.Write(buf)
			return bytes.TrimSuffix(buf, []byte{'\n'}), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return nil, fmt.Errorf("%w: the last line has no end", ErrTruncated)
		default:
			return nil, err
		}
	}
}

// check refuses records a state cannot hold: missing or repeated ids or
// token hashes.
func (s *Snapshot) check() error {
	seen := map[string]bool{}
	for i := range s.Subs {
		id := s.Subs[i].ID
		if id == "" || seen[id] {
			return fmt.Errorf("%w: subscription id %q missing or repeated", ErrInvalid, id)
		}
		seen[id] = true
	}
	ids, hashes := map[string]bool{}, map[string]bool{}
	for i := range s.Tokens {
		t := &s.Tokens[i]
		if t.ID == "" || t.Hash == "" || ids[t.ID] || hashes[t.Hash] {
			return fmt.Errorf("%w: token %q without id or hash, or repeated", ErrInvalid, t.ID)
		}
		ids[t.ID], hashes[t.Hash] = true, true
	}
	nodes := map[string]bool{}
	for i := range s.Nodes {
		id := s.Nodes[i].ID
		if id == "" || nodes[id] {
			return fmt.Errorf("%w: node id %q missing or repeated", ErrInvalid, id)
		}
		nodes[id] = true
	}
	return nil
}

// WriteFile writes s to path, mode 0600 (the file holds subscription
// secrets), through a temporary file renamed over path once complete and
// synced. It refuses to overwrite a file unless overwrite is set.
func WriteFile(path string, s *Snapshot, overwrite bool) error {
	return writeFileFrom(path, overwrite, func(w io.Writer) error { return Write(w, s) })
}

// CopyToFile writes a snapshot stream (as GET /v1/snapshot serves it) to
// path like WriteFile, after checking it with Read; it returns the header.
func CopyToFile(path string, r io.Reader, overwrite bool, progress Progress) (Header, error) {
	var h Header
	err := writeFileFrom(path, overwrite, func(w io.Writer) error {
		s, err := Read(io.TeeReader(r, w), progress)
		if err != nil {
			return err
		}
		h = s.Header
		return nil
	})
	return h, err
}

func writeFileFrom(path string, overwrite bool, write func(w io.Writer) error) error {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("backup: %s exists (overwrite it with --force)", path)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok = true
	return nil
}

// ReadFile reads and checks the snapshot file at path.
func ReadFile(path string, progress Progress) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	return Read(f, progress)
}
