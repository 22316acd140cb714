package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Path is where the dashboard is served.
const Path = "/ui/"

//go:embed static
var static embed.FS

// files is the static directory as the root of the served tree.
var files = func() fs.FS {
	f, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return f
}()

// Register serves the dashboard on e: GET and HEAD of /ui/ and the files
// under it, and /ui redirected to /ui/.
func Register(e *echo.Echo) {
	h := Handler()
	wrapped := echo.WrapHandler(h)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		e.Add(m, "/ui", func(c echo.Context) error {
			setHeaders(c.Response().Header(), c.Request().Host)
			return c.Redirect(http.StatusMovedPermanently, Path)
		})
		e.Add(m, Path+"*", wrapped)
	}
}

// Handler serves the files under /ui/ with the security headers.
func Handler() http.Handler {
	fsrv := http.StripPrefix(Path, http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w.Header(), r.Host)
		// The files change with the binary: revalidate every time, so an
		// upgraded node never runs a stale mix of modules.
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}

// CSP returns the Content-Security-Policy of the dashboard for a request
// to host: only this origin's scripts, styles and images, no inline script
// or style, API calls and the event websocket to this origin only, no
// framing, no forms posting elsewhere.
func CSP(host string) string {
	connect := "'self'"
	if validHost(host) {
		// 'self' covers ws: and wss: of the same host in CSP level 3;
		// naming them keeps browsers that predate that working.
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src " + connect + "; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
}

// validHost reports whether host (the request's Host header) is a plain
// host[:port] that may be written into the policy unchanged.
func validHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	return true
}

func setHeaders(h http.Header, host string) {
	h.Set("Content-Security-Policy", CSP(host))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}
