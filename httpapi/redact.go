package httpapi

import (
	"net/url"
	"strings"
)

// authKeyParam is the query parameter that may carry a token.
const authKeyParam = "authkey"

// RedactURL renders a request URL for a log line: the value of every
// authkey parameter is replaced, so a token passed in the URL never reaches
// a log. Every log line that shows a request URL must go through it.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	if c.RawQuery != "" {
		parts := strings.Split(c.RawQuery, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			if uk, err := url.QueryUnescape(k); err == nil && strings.EqualFold(uk, authKeyParam) || strings.EqualFold(k, authKeyParam) {
				parts[i] = k + "=REDACTED"
			}
		}
		c.RawQuery = strings.Join(parts, "&")
	}
	return c.String()
}
