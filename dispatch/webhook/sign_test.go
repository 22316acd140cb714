package webhook

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestSignMatchesStandardWebhooks(t *testing.T) {
	const fixedSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ts := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		secret string
		msgID  string
		body   string
	}{
		{"fixed secret", fixedSecret, "msg_p5jXN8AQM9LWM0D4loKWxJek", `{"test":2432232314}`},
		{"empty body", fixedSecret, "msg_1", ``},
		{"array body with unicode", NewSecret(), "msg_abc", `[{"model":"call","name":"Zoë ☃"}]`},
		{"fresh secret", NewSecret(), "msg_x", `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Sign(tt.secret, tt.msgID, ts, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			wh, err := standardwebhooks.NewWebhook(tt.secret)
			if err != nil {
				t.Fatal(err)
			}
			want, err := wh.Sign(tt.msgID, ts, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("Sign = %s, library = %s", got, want)
			}
			h := http.Header{}
			h.Set(HeaderWebhookID, tt.msgID)
			h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
			h.Set(HeaderWebhookSignature, got)
			if err := wh.VerifyIgnoringTimestamp([]byte(tt.body), h); err != nil {
				t.Fatalf("library rejects our signature: %v", err)
			}
			if err := wh.VerifyIgnoringTimestamp([]byte(tt.body+"x"), h); err == nil {
				t.Fatal("library accepts a tampered body")
			}
		})
	}
}

func TestNewSecret(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	for _, s := range []string{a, b} {
		if !strings.HasPrefix(s, SecretPrefix) {
			t.Fatalf("secret %q lacks prefix", s)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
		if err != nil || len(key) != SecretBytes {
			t.Fatalf("secret key: %d bytes, %v", len(key), err)
		}
		if err := ValidateSecret(s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestValidateSecret(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name   string
		secret string
		ok     bool
	}{
		{"min size", SecretPrefix + b64(MinSecretBytes), true},
		{"max size", SecretPrefix + b64(MaxSecretBytes), true},
		{"no prefix", b64(32), false},
		{"too short", SecretPrefix + b64(MinSecretBytes-1), false},
		{"too long", SecretPrefix + b64(MaxSecretBytes+1), false},
		{"not base64", SecretPrefix + "!!!not-base64!!!", false},
		{"empty key", SecretPrefix, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSecret(tt.secret)
			if tt.ok != (err == nil) {
				t.Fatalf("ValidateSecret = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadSecret) {
					t.Fatalf("error %v does not wrap ErrBadSecret", err)
				}
				if key := strings.TrimPrefix(tt.secret, SecretPrefix); len(key) > 4 && strings.Contains(err.Error(), key) {
					t.Fatalf("error leaks the secret: %v", err)
				}
			}
		})
	}
}

func TestSignBadSecret(t *testing.T) {
	const secret = "whsec_%%%topsecret%%%"
	_, err := Sign(secret, "msg", time.Now(), nil)
	if !errors.Is(err, ErrBadSecret) || strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("Sign with a bad secret: %v", err)
	}
}
