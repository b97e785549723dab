package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// Hand-written because no maintained Go library exports PostgreSQL's
// verifier format (client libraries implement the exchange, not storage).
// SCRAMVerifier encodes password as PostgreSQL stores it for
// password_encryption = scram-sha-256 (RFC 5802 and 7677):
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, all base64.
// PostgreSQL SASLprep-normalises passwords; for ASCII, which is what
// generated passwords are, that is the identity, so other passwords are
// refused rather than encoded differently from the server.
func SCRAMVerifier(password string) (string, error) {
	for _, r := range password {
		if r < 0x20 || r > 0x7e {
			return "", errors.New("SCRAMVerifier encodes printable ASCII passwords only (no SASLprep)")
		}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	storedKey := sha256.Sum256(mac(salted, "Client Key"))
	serverKey := mac(salted, "Server Key")
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(storedKey[:]), b64(serverKey)), nil
}
