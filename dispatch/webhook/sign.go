package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret (Standard Webhooks).
const SecretPrefix = "whsec_"

// Secret key sizes in bytes: NewSecret makes SecretBytes; ValidateSecret
// accepts MinSecretBytes..MaxSecretBytes (the Standard Webhooks range).
const (
	SecretBytes    = 32
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// signatureVersion is the Standard Webhooks scheme tag for HMAC-SHA256.
const signatureVersion = "v1"

// ErrBadSecret is wrapped by errors about a malformed signing secret. The
// error never contains the secret.
var ErrBadSecret = errors.New("invalid signing secret")

// NewSecret returns a fresh signing secret: "whsec_" and the standard base64
// of SecretBytes random bytes.
func NewSecret() string {
	key := make([]byte, SecretBytes)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (it aborts the process instead)
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// ValidateSecret checks a user-supplied secret: "whsec_" followed by the
// standard base64 of MinSecretBytes..MaxSecretBytes bytes.
func ValidateSecret(secret string) error {
	if !strings.HasPrefix(secret, SecretPrefix) {
		return fmt.Errorf("%w: must start with %q", ErrBadSecret, SecretPrefix)
	}
	// base64's decoder skips line breaks; a secret has none.
	if strings.ContainsAny(secret, "\r\n") {
		return fmt.Errorf("%w: has a line break", ErrBadSecret)
	}
	key, err := decodeSecret(secret)
	if err != nil {
		return err
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return fmt.Errorf("%w: key is %d bytes, want %d to %d", ErrBadSecret, len(key), MinSecretBytes, MaxSecretBytes)
	}
	return nil
}

func decodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return nil, fmt.Errorf("%w: not base64 after %q", ErrBadSecret, SecretPrefix)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrBadSecret)
	}
	return key, nil
}

// Sign returns the webhook-signature header value for one attempt:
// "v1,<base64 HMAC-SHA256(key, msgID + "." + unix seconds of ts + "." + body)>",
// where key is the base64-decoded part of secret after "whsec_".
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	key, err := decodeSecret(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(msgID))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return signatureVersion + "," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// SignAll returns the webhook-signature header value for one attempt signed
// with each of secrets, space-separated as Standard Webhooks specifies for
// a rotation ("v1,<new> v1,<old>"): a receiver that knows either secret
// verifies it.
func SignAll(secrets []string, msgID string, ts time.Time, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sig, err := Sign(s, msgID, ts, body)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return "", fmt.Errorf("%w: none given", ErrBadSecret)
	}
	return strings.Join(sigs, " "), nil
}

// secrets returns the secrets a POST to t at now is signed with: its
// secret, and its previous one while the rotation's overlap lasts.
func (t *Target) secrets(now time.Time) []string {
	if t.OldSecret != "" && t.OldSecret != t.Secret && now.Before(t.OldSecretUntil) {
		return []string{t.Secret, t.OldSecret}
	}
	return []string{t.Secret}
}
