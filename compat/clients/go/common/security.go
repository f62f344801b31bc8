package common

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// The security scenarios run against compat/security.py's broker: its listeners, certificates
// and credentials come from the COMPAT_SEC_* environment variables.

// Sec is one COMPAT_SEC_<name> variable; the scenario fails when it is not set.
func Sec(name string) string {
	v := os.Getenv("COMPAT_SEC_" + name)
	Check(v != "", "COMPAT_SEC_%s not set: security scenarios run against compat/security.py's broker", name)
	return v
}

// Login says how one client connects in a security scenario.
type Login struct {
	Listener  string // SASL_PLAINTEXT, SSL, MTLS or SASL_SSL
	Protocol  string // the security protocol: SASL_PLAINTEXT, SSL or SASL_SSL
	Bootstrap string
	Mechanism string // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 ("" without SASL)
	User      string
	Password  string
	Cert      string // "client", "untrusted" or "" (no client certificate; MTLS only)
	// TokenLifetime is how long an OAUTHBEARER token is valid from now (negative: expired).
	TokenLifetime time.Duration
}

// Token is the login's OAUTHBEARER token: an unsecured JWS for the user.
func (l Login) Token() string { return UnsecuredJWS(l.User, l.TokenLifetime) }

// SASL tells whether the login authenticates with SASL.
func (l Login) SASL() bool { return strings.HasPrefix(l.Protocol, "SASL_") }

// TLS tells whether the connection is TLS.
func (l Login) TLS() bool { return l.Protocol == "SSL" || l.Protocol == "SASL_SSL" }

// Label names the protocol and mechanism for a cell's detail.
func (l Login) Label() string {
	if l.Mechanism != "" {
		return l.Protocol + "/" + l.Mechanism
	}
	return l.Protocol
}

// TLSConfig trusts the test CA (checking the server's name, 127.0.0.1) and presents the login's
// client certificate, if any; nil without TLS.
func (l Login) TLSConfig() *tls.Config {
	if !l.TLS() {
		return nil
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(Sec("CA"))
	Must(err, "reading the CA")
	Check(pool.AppendCertsFromPEM(ca), "no certificate in %s", Sec("CA"))
	host := l.Bootstrap[:strings.LastIndexByte(l.Bootstrap, ':')]
	cfg := &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	if l.Cert != "" {
		name := strings.ToUpper(l.Cert)
		pair, err := tls.LoadX509KeyPair(Sec(name+"_CERT"), Sec(name+"_KEY"))
		Must(err, "loading the "+l.Cert+" certificate")
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// UnsecuredJWS is an unsecured JWS (alg none, empty signature) naming subject, valid for an hour:
// the token Kafka's unsecured OAUTHBEARER validator accepts.
func UnsecuredJWS(subject string, lifetime time.Duration) string {
	part := func(doc map[string]any) string {
		b, _ := json.Marshal(doc)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now().Unix()
	exp := now + int64(lifetime/time.Second)
	return part(map[string]any{"alg": "none"}) + "." + part(map[string]any{"sub": subject, "iat": min(now, exp-60), "exp": exp}) + "."
}

// LoginOpt changes a Login from alice's defaults.
type LoginOpt func(*Login)

// WithPassword logs in with another password.
func WithPassword(p string) LoginOpt { return func(l *Login) { l.Password = p } }

// WithUser logs in as another user.
func WithUser(u string) LoginOpt { return func(l *Login) { l.User = u } }

// WithTokenLifetime makes the OAUTHBEARER token expire d from now (negative: in the past).
func WithTokenLifetime(d time.Duration) LoginOpt { return func(l *Login) { l.TokenLifetime = d } }

// WithCert presents another client certificate ("untrusted", or "" for none).
func WithCert(c string) LoginOpt { return func(l *Login) { l.Cert = c } }

// LoginFor connects to listener: SASL as alice with mechanism, MTLS with the client certificate.
func LoginFor(listener, mechanism string, opts ...LoginOpt) Login {
	protocol := listener
	if listener == "MTLS" {
		protocol = "SSL"
	}
	l := Login{Listener: listener, Protocol: protocol, Bootstrap: Sec(listener), TokenLifetime: time.Hour}
	if strings.HasPrefix(protocol, "SASL_") {
		l.Mechanism, l.User, l.Password = mechanism, Sec("USER"), Sec("PASSWORD")
	}
	if listener == "MTLS" {
		l.Cert = "client"
	}
	for _, o := range opts {
		o(&l)
	}
	return l
}

// SecRoundtrips are the security scenarios that produce and read back over one listener:
// scenario -> listener and mechanism.
var SecRoundtrips = map[string][2]string{
	"sec_sasl_plain":        {"SASL_PLAINTEXT", "PLAIN"},
	"sec_sasl_scram_sha256": {"SASL_PLAINTEXT", "SCRAM-SHA-256"},
	"sec_sasl_scram_sha512": {"SASL_PLAINTEXT", "SCRAM-SHA-512"},
	"sec_sasl_oauthbearer":  {"SASL_PLAINTEXT", "OAUTHBEARER"},
	"sec_ssl":               {"SSL", ""},
	"sec_ssl_client_cert":   {"MTLS", ""},
	"sec_sasl_ssl_plain":    {"SASL_SSL", "PLAIN"},
	"sec_sasl_ssl_scram":    {"SASL_SSL", "SCRAM-SHA-512"},
}

// Refusal is a login the broker must refuse.
type Refusal struct {
	Label string
	Login Login
}

// SecRefusals are a negative scenario's refused logins and the login that must then work on
// the same listener.
func SecRefusals(scenario string) ([]Refusal, Login) {
	switch scenario {
	case "sec_wrong_password":
		return []Refusal{
			{"PLAIN with a wrong password", LoginFor("SASL_PLAINTEXT", "PLAIN", WithPassword(Sec("WRONG_PASSWORD")))},
			{"SCRAM-SHA-256 with a wrong password",
				LoginFor("SASL_PLAINTEXT", "SCRAM-SHA-256", WithPassword(Sec("WRONG_PASSWORD")))},
		}, LoginFor("SASL_PLAINTEXT", "PLAIN")
	case "sec_unknown_user":
		return []Refusal{
			{"PLAIN as an unknown user", LoginFor("SASL_PLAINTEXT", "PLAIN", WithUser(Sec("UNKNOWN_USER")))},
			{"SCRAM-SHA-512 as an unknown user", LoginFor("SASL_PLAINTEXT", "SCRAM-SHA-512", WithUser(Sec("UNKNOWN_USER")))},
		}, LoginFor("SASL_PLAINTEXT", "SCRAM-SHA-512")
	case "sec_oauthbearer_expired":
		return []Refusal{
			{"an OAUTHBEARER token expired 10 minutes ago",
				LoginFor("SASL_PLAINTEXT", "OAUTHBEARER", WithTokenLifetime(-10*time.Minute))},
		}, LoginFor("SASL_PLAINTEXT", "OAUTHBEARER")
	case "sec_untrusted_cert":
		return []Refusal{
			{"a certificate from an untrusted CA", LoginFor("MTLS", "", WithCert("untrusted"))},
			{"no client certificate", LoginFor("MTLS", "", WithCert(""))},
		}, LoginFor("MTLS", "")
	}
	Fatalf("no refusals for %s", scenario)
	return nil, Login{}
}

// SecScenarios registers the security scenarios: roundtrip(bootstrap, scenario, login) produces
// and reads back; refused(login) tries a login the broker must refuse and returns the error the
// client reported (nil if it got in) and whether that error is an authentication error as
// expected (SASL: the broker's SaslAuthenticate answer; TLS: the handshake or, under TLS 1.3,
// the broker's alert right after it).
func SecScenarios(scenarios map[string]Scenario, roundtrip func(bootstrap, scenario string, l Login) string,
	refused func(bootstrap, scenario string, l Login) (error, bool)) {
	for id, lm := range SecRoundtrips {
		id, lm := id, lm
		scenarios[id] = func(b string) string { return roundtrip(b, id, LoginFor(lm[0], lm[1])) }
	}
	for _, id := range []string{"sec_wrong_password", "sec_unknown_user", "sec_oauthbearer_expired", "sec_untrusted_cert"} {
		id := id
		scenarios[id] = func(b string) string {
			bad, good := SecRefusals(id)
			var notes []string
			for _, r := range bad {
				err, ok := refused(b, id, r.Login)
				Check(err != nil, "%s: the broker accepted it", r.Label)
				Check(ok, "%s: failed, but not with an authentication error: %v", r.Label, err)
				text := err.Error()
				if len(text) > 90 {
					text = text[:90]
				}
				notes = append(notes, fmt.Sprintf("%s: %s", r.Label, text))
			}
			return roundtrip(b, id, good) + "; refused: " + strings.Join(notes, "; ")
		}
	}
}
