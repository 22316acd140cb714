package httpapi

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	const key = "hs_SECRETsecret-_123"
	tests := []struct{ in, want string }{
		{"/v1/events", "/v1/events"},
		{"/v1/events?authkey=" + key, "/v1/events?authkey=REDACTED"},
		{"/events/websocket/?since=1&authkey=" + key + "&model=call", "/events/websocket/?since=1&authkey=REDACTED&model=call"},
		{"/v1/events?AuthKey=" + key, "/v1/events?AuthKey=REDACTED"},
		{"/v1/events?auth%6Bey=" + key, "/v1/events?auth%6Bey=REDACTED"},
		{"/v1/events?authkey=" + key + "&authkey=" + key, "/v1/events?authkey=REDACTED&authkey=REDACTED"},
		{"/v1/events?authkey", "/v1/events?authkey=REDACTED"},
		{"http://u:" + key + "@h/x?a=1", "http://h/x?a=1"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got := RedactURL(u)
		if got != tt.want || strings.Contains(got, key) {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if RedactURL(nil) != "" {
		t.Error("RedactURL(nil) is not empty")
	}
}
