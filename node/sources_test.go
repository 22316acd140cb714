package node

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSources(t *testing.T) {
	tests := []struct {
		in   []string
		want []SourceSpec
		err  string
	}{
		{in: []string{"http"}},
		{in: nil},
		{in: []string{"http", " kamailio://127.0.0.1:8448 ", "ami://hs:pw@127.0.0.1:5038?domain=example.com"}, want: []SourceSpec{
			{Kind: "kamailio", Addr: "127.0.0.1:8448", Name: "kamailio://127.0.0.1:8448"},
			{Kind: "ami", Addr: "127.0.0.1:5038", Username: "hs", Secret: "pw", Domain: "example.com", Name: "ami://hs@127.0.0.1:5038"},
		}},
		{in: []string{"ami://hs:p%40ss@[::1]:5038"}, want: []SourceSpec{{Kind: "ami", Addr: "[::1]:5038", Username: "hs", Secret: "p@ss", Name: "ami://hs@[::1]:5038"}}},
		{in: []string{"ftp://x:1"}, err: "unknown kind"},
		{in: []string{"kamailio://127.0.0.1"}, err: "HOST:PORT"},
		{in: []string{"kamailio://u:topsecret@127.0.0.1:8448"}, err: "no user"},
		{in: []string{"ami://127.0.0.1:5038"}, err: "USER:PASS"},
		{in: []string{"ami://u:topsecret@127.0.0.1:5038?x=1"}, err: "unknown option"},
		{in: []string{"ami://u:topsecret@127.0.0.1:5038/path"}, err: "no path"},
		{in: []string{"kamailio://127.0.0.1:8448", "kamailio://127.0.0.1:8448"}, err: "twice"},
		{in: []string{"::not a url topsecret"}, err: "entry 1"},
	}
	for _, tt := range tests {
		got, err := ParseSources(tt.in)
		if tt.err != "" {
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSources(%q) = %v, want an ErrConfig with %q", tt.in, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "topsecret") {
				t.Errorf("ParseSources(%q): the password is in the error %q", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSources(%q): %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("ParseSources(%q) = %+v, want %+v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ParseSources(%q)[%d] = %+v, want %+v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

func TestValidateChecksSources(t *testing.T) {
	c := Default()
	c.Sources = []string{"kamailio://nohost"}
	if err := c.Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("Validate with a bad source: %v, want ErrConfig", err)
	}
	if d := Default(); len(d.Sources) != 1 || d.Sources[0] != DefaultSources {
		t.Errorf("default sources %q", d.Sources)
	}
}
