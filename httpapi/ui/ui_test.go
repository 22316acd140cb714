package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func serve(t *testing.T, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	e := echo.New()
	Register(e)
	req := httptest.NewRequest(method, path, nil)
	req.Host = "node1.example:8080"
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestServes(t *testing.T) {
	tests := []struct {
		method, path string
		code         int
		ctype        string // prefix
		body         string // substring
	}{
		{http.MethodGet, "/ui/", http.StatusOK, "text/html", `<script type="module" src="app.js">`},
		{http.MethodHead, "/ui/", http.StatusOK, "text/html", ""},
		{http.MethodGet, "/ui/app.js", http.StatusOK, "text/javascript", "import"},
		{http.MethodGet, "/ui/style.css", http.StatusOK, "text/css", "font"},
		{http.MethodGet, "/ui/favicon.svg", http.StatusOK, "image/svg+xml", "<svg"},
		{http.MethodGet, "/ui/nope.js", http.StatusNotFound, "", ""},
		{http.MethodGet, "/ui/../go.mod", http.StatusNotFound, "", ""},
		{http.MethodGet, "/ui", http.StatusMovedPermanently, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := serve(t, tc.method, tc.path)
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d (%s)", rec.Code, tc.code, rec.Body)
			}
			h := rec.Header()
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
				t.Errorf("Content-Type %q, want %q…", ct, tc.ctype)
			}
			if !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("body lacks %q", tc.body)
			}
			if tc.code == http.StatusMovedPermanently && h.Get("Location") != Path {
				t.Errorf("Location %q, want %q", h.Get("Location"), Path)
			}
			for k, v := range map[string]string{
				"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' ws://node1.example:8080 wss://node1.example:8080; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			} {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestCSPHost(t *testing.T) {
	tests := []struct{ host, connect string }{
		{"127.0.0.1:8080", "connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"},
		{"[::1]:80", "connect-src 'self' ws://[::1]:80 wss://[::1]:80;"},
		{"evil; script-src *", "connect-src 'self';"},
		{"a b", "connect-src 'self';"},
		{"", "connect-src 'self';"},
		{strings.Repeat("a", 300), "connect-src 'self';"},
	}
	for _, tc := range tests {
		if got := CSP(tc.host); !strings.Contains(got, tc.connect) || strings.Count(got, "script-src") != 1 {
			t.Errorf("CSP(%q) = %q, want it to contain %q", tc.host, got, tc.connect)
		}
	}
}

// The policy forbids inline script and style: the files must not need
// them, and must load nothing from another origin.
func TestStaticFilesAreCSPClean(t *testing.T) {
	inline := []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`), // a script element with content
		regexp.MustCompile(`<script(?:(?:\s+\w+(?:="[^"]*")?)*)>`),
		regexp.MustCompile(`\sstyle\s*=`),
		regexp.MustCompile(`<style`),
		regexp.MustCompile(`\son[a-z]+\s*=`),
		regexp.MustCompile(`javascript:`),
		regexp.MustCompile(`setAttribute\(\s*['"](style|on)`),
		regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function`),
	}
	external := regexp.MustCompile(`(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	n := 0
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		s := string(b)
		for i, re := range inline {
			if i == 1 {
				// Every script tag must have a src.
				for _, tag := range re.FindAllString(s, -1) {
					if !strings.Contains(tag, "src=") {
						t.Errorf("%s: script without src: %s", path, tag)
					}
				}
				continue
			}
			if m := re.FindString(s); m != "" {
				t.Errorf("%s: %q is refused by the policy or unsafe", path, m)
			}
		}
		for _, m := range external.FindAllString(s, -1) {
			// The SVG namespace and RFC 2606 example names in placeholders.
			if m != "http://www.w3.org" && !strings.HasSuffix(m, ".example") {
				t.Errorf("%s: reference to another origin: %s", path, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d files embedded", n)
	}
}
