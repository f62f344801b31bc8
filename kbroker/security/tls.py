"""TLS for SSL and SASL_SSL listeners: the server's ``SSLContext`` from Kafka's ``ssl.*`` keys,
and the principal of a client from its certificate.

Key stores: PEM (a file with the certificate chain and the private key, or both inline with
``ssl.keystore.certificate.chain`` and ``ssl.keystore.key``; the key may be encrypted with
``ssl.key.password``) and PKCS12. Trust stores: PEM (a file or ``ssl.truststore.certificates``)
and PKCS12. JKS, Kafka's default type, needs a JVM: it is refused with a message saying how
to convert it. Every error is a :class:`ConfigError` naming the key at fault, as the listener
sees it (``listener.name.<listener>.<key>`` when that form set it).

The principal follows Kafka's ``DefaultKafkaPrincipalBuilder``: ``User:ANONYMOUS`` without a
client certificate, else ``User:`` and the certificate's subject in RFC 2253 form (as Java's
``X500Principal.getName()`` writes it) mapped through ``ssl.principal.mapping.rules``
(Kafka's ``SslPrincipalMapper``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import secrets
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from kbroker.config import BrokerConfig, ConfigError
from kbroker.security.model import ANONYMOUS

log = logging.getLogger(__name__)

_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.DOTALL)
_JKS_MAGIC = b"\xfe\xed\xfe\xed"
_TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class ListenerTls:
    """What an SSL or SASL_SSL listener needs: its server context and, on SSL listeners,
    the function naming a client's principal from its certificate."""

    context: ssl.SSLContext
    principal: Callable[[bytes | None], str]


def listener_tls(config: BrokerConfig, listener: str) -> ListenerTls:
    """The TLS set-up of one listener from its ``ssl.*`` keys (raises :class:`ConfigError`)."""
    keys = _ListenerKeys(config, listener)
    mapper = PrincipalMapper.from_config(keys)
    return ListenerTls(server_context(config, listener), mapper.principal_from_certificate)


class _ListenerKeys:
    """A listener's view of the ``ssl.*`` keys, and the name to blame for each."""

    def __init__(self, config: BrokerConfig, listener: str) -> None:
        self.config = config
        self.listener = listener
        self._overridden = config.listener_keys()

    def get(self, key: str) -> Any:
        value = self.config.listener_get(self.listener, key)
        if isinstance(value, str) and key in ("ssl.keystore.type", "ssl.truststore.type"):
            return value.upper()
        return value

    def name(self, key: str) -> str:
        """The key as it was given: ``listener.name.<l>.<key>`` when that form set it."""
        prefixed = f"listener.name.{self.listener.lower()}.{key}"
        return prefixed if prefixed in self._overridden else key

    def error(self, key: str, message: str) -> ConfigError:
        name = self.name(key)
        return ConfigError(f"{name}: {message}", name)


def server_context(config: BrokerConfig, listener: str) -> ssl.SSLContext:
    """The server-side ``SSLContext`` of ``listener`` (raises :class:`ConfigError` naming the key)."""
    keys = _ListenerKeys(config, listener)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Kafka refuses renegotiation (SslTransportLayer: "Renegotiation is not supported").
    context.options |= ssl.OP_NO_RENEGOTIATION
    _load_key_store(context, keys)
    client_auth = str(keys.get("ssl.client.auth")).lower()
    if config.security_protocol(listener) == "SASL_SSL" and keys.name("ssl.client.auth") == "ssl.client.auth":
        # As Kafka: SASL authenticates SASL_SSL clients; only the listener's own ssl.client.auth asks
        # them for a certificate too.
        client_auth = "none"
    if client_auth not in _CLIENT_AUTH:
        raise keys.error("ssl.client.auth", f"{client_auth!r} is not one of none, requested, required")
    context.verify_mode = _CLIENT_AUTH[client_auth]
    trusted = _load_trust_store(keys)
    if trusted is not None:
        context.load_verify_locations(cadata=trusted)
    elif client_auth != "none":
        # As Java without a trust store: the platform's certificate authorities.
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    _set_protocols_and_ciphers(context, keys)
    if trusted is not None and client_auth != "none" and not name_trusted_authorities(context, trusted):
        log.debug("listener %s: the TLS certificate request cannot name the trusted CAs here", listener)
    return context


def client_context(config: BrokerConfig, listener: str) -> ssl.SSLContext:
    """The client-side ``SSLContext`` for connecting to other brokers' ``listener`` (replication).

    As Kafka's inter-broker clients, it takes the listener's own ``ssl.*`` keys: the trust store
    verifies the other broker (the platform's authorities without one), the key store, when set,
    is this broker's client certificate, and ``ssl.endpoint.identification.algorithm=https``
    (the default) checks the other broker's host name. Raises :class:`ConfigError`.
    """
    keys = _ListenerKeys(config, listener)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    algorithm = keys.get("ssl.endpoint.identification.algorithm")
    context.check_hostname = str(algorithm or "").lower() == "https"
    context.verify_mode = ssl.CERT_REQUIRED
    trusted = _load_trust_store(keys)
    if trusted is not None:
        context.load_verify_locations(cadata=trusted)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if keys.get("ssl.keystore.location") is not None or keys.get("ssl.keystore.key") is not None:
        _load_key_store(context, keys)
    _set_protocols_and_ciphers(context, keys)
    return context


def name_trusted_authorities(context: ssl.SSLContext, trusted_pem: str) -> bool:
    """Make the server's certificate request name the trusted CAs, as Kafka's (JSSE's) does:
    a client holding a certificate from another CA then connects without sending it where
    ``ssl.client.auth=requested``, instead of failing the handshake. Returns False when it
    cannot be done on this Python.

    Python's ``ssl`` has no call for OpenSSL's ``SSL_CTX_set_client_CA_list``; it is reached
    through the libssl the ``_ssl`` module itself uses, on the ``SSL_CTX`` that follows the
    context object's header, used only after that pointer answers with this context's verify
    mode and options.
    """
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_load_client_CA_file.argtypes = [ctypes.c_char_p]
        lib.SSL_load_client_CA_file.restype = ctypes.c_void_p
        lib.SSL_CTX_set_client_CA_list.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.SSL_CTX_set_client_CA_list.restype = None
    except (OSError, AttributeError, ValueError):
        return False
    expected_mode = {ssl.CERT_NONE: 0, ssl.CERT_OPTIONAL: 1, ssl.CERT_REQUIRED: 3}[context.verify_mode]
    if not ctx or lib.SSL_CTX_get_verify_mode(ctx) & 3 != expected_mode \
            or lib.SSL_CTX_get_options(ctx) != int(context.options):
        return False
    # The certificates are public: a temporary file is how OpenSSL reads their names.
    fd, path = tempfile.mkstemp(prefix="kbroker-ca-", suffix=".pem")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(trusted_pem)
        names = lib.SSL_load_client_CA_file(path.encode())
    finally:
        os.unlink(path)
    if not names:
        return False
    lib.SSL_CTX_set_client_CA_list(ctx, names)  # the context owns the list from here
    return True


# --- key store -------------------------------------------------------------------------------

def _load_key_store(context: ssl.SSLContext, keys: _ListenerKeys) -> None:
    """Load the server's certificate chain and key, per Kafka's DefaultSslEngineFactory rules."""
    store_type = keys.get("ssl.keystore.type")
    location = keys.get("ssl.keystore.location")
    store_password = keys.get("ssl.keystore.password")
    key_password = keys.get("ssl.key.password")
    inline_key = keys.get("ssl.keystore.key")
    inline_chain = keys.get("ssl.keystore.certificate.chain")
    if inline_key is not None or inline_chain is not None:
        if inline_key is None:
            raise keys.error("ssl.keystore.certificate.chain",
                             "the certificate chain is set but ssl.keystore.key (the private key) is not")
        if inline_chain is None:
            raise keys.error("ssl.keystore.key",
                             "the private key is set but ssl.keystore.certificate.chain is not")
        if store_type != "PEM":
            raise keys.error("ssl.keystore.type", f"is {store_type}, but an inline key and certificate chain "
                             "(ssl.keystore.key, ssl.keystore.certificate.chain) need ssl.keystore.type=PEM")
        if location is not None:
            raise keys.error("ssl.keystore.location", "both a key store file and an inline key "
                             "(ssl.keystore.key) are set; set one of them")
        if store_password is not None:
            raise keys.error("ssl.keystore.password", "cannot be set with an inline PEM key; set only "
                             "ssl.key.password (the key's password)")
        chain = _pem_certificates(inline_chain.encode(), keys, "ssl.keystore.certificate.chain")
        key = _pem_private_key(inline_key.encode(), key_password, keys, "ssl.keystore.key", "ssl.key.password")
        _use_key(context, chain, key, keys, "ssl.keystore.key")
        return
    if location is None:
        raise keys.error("ssl.keystore.location", "an SSL listener needs the server's certificate and key: set "
                         "ssl.keystore.location (or ssl.keystore.certificate.chain and ssl.keystore.key)")
    data = _read(keys, "ssl.keystore.location")
    if store_type == "JKS" or data.startswith(_JKS_MAGIC):
        raise _jks_error(keys, "ssl.keystore", location)
    if store_type == "PEM":
        # Kafka takes ssl.key.password; the key store password stands in for it here.
        password_key = "ssl.keystore.password" if key_password is None and store_password else "ssl.key.password"
        chain = _pem_certificates(data, keys, "ssl.keystore.location")
        key = _pem_private_key(data, key_password if key_password is not None else store_password, keys,
                               "ssl.keystore.location", password_key)
        _use_key(context, chain, key, keys, "ssl.keystore.location")
        return
    # PKCS12
    if store_password is None:
        raise keys.error("ssl.keystore.password", f"the PKCS12 key store {location} is set but its password is not")
    try:
        p12_key, cert, extra = pkcs12.load_key_and_certificates(data, store_password.encode())
    except ValueError as e:
        raise keys.error("ssl.keystore.password", f"cannot open the PKCS12 key store {location}: wrong password "
                         f"or not a PKCS12 file ({e})") from None
    if p12_key is None or cert is None:
        raise keys.error("ssl.keystore.location", f"the PKCS12 key store {location} holds no private key with "
                         "its certificate")
    _use_key(context, [cert, *extra], p12_key, keys, "ssl.keystore.location")


def _jks_error(keys: _ListenerKeys, prefix: str, location: str) -> ConfigError:
    return keys.error(f"{prefix}.type", f"{location} is a JKS store (JKS is Kafka's default "
                      f"{prefix}.type), which only a JVM reads; convert it with `keytool -importkeystore "
                      f"-srckeystore {location} -destkeystore store.p12 -deststoretype PKCS12` and set "
                      f"{prefix}.type=PKCS12, or use PEM files with {prefix}.type=PEM")


def _read(keys: _ListenerKeys, key: str) -> bytes:
    path = keys.get(key)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise keys.error(key, f"cannot read {path}: {e.strerror or e}") from None


def _pem_certificates(data: bytes, keys: _ListenerKeys, key: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise keys.error(key, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return certificates


def _pem_private_key(data: bytes, password: str | None, keys: _ListenerKeys, key: str,
                     password_key: str) -> PrivateKeyTypes:
    blocks = [m.group(0) for m in _PEM_KEY.finditer(data)]
    if len(blocks) != 1:
        found = "no" if not blocks else str(len(blocks))
        raise keys.error(key, f"expected one PEM private key (-----BEGIN PRIVATE KEY-----), found {found}")
    try:
        return serialization.load_pem_private_key(blocks[0], password.encode() if password is not None else None)
    except TypeError:
        if password is None:
            raise keys.error(password_key, f"the private key in {key} is encrypted: set {password_key}") from None
        # A password for a key that is not encrypted: Java would fail; the key is usable as is.
        return serialization.load_pem_private_key(blocks[0], None)
    except ValueError as e:
        if password is not None and b"ENCRYPTED" in blocks[0]:
            raise keys.error(password_key, f"cannot decrypt the private key in {key}: wrong password") from None
        raise keys.error(key, f"cannot read the private key: {e}") from None


def _use_key(context: ssl.SSLContext, chain: list[x509.Certificate], key: PrivateKeyTypes,
             keys: _ListenerKeys, blame: str) -> None:
    """Hand the chain and key to OpenSSL, which reads them only from a file: a private 0600
    temporary file holding the key encrypted with a one-off password, removed at once."""
    token = secrets.token_urlsafe(32)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(token.encode()))
    fd, path = tempfile.mkstemp(prefix="kbroker-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        context.load_cert_chain(path, password=token)
    except ssl.SSLError as e:
        reason = "the private key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(e) else str(e)
        raise keys.error(blame, f"cannot use the server certificate and key: {reason}") from None
    finally:
        os.unlink(path)


# --- trust store -----------------------------------------------------------------------------

def _load_trust_store(keys: _ListenerKeys) -> str | None:
    """The trusted certificates as PEM text, or None when no trust store is configured."""
    store_type = keys.get("ssl.truststore.type")
    location = keys.get("ssl.truststore.location")
    password = keys.get("ssl.truststore.password")
    inline = keys.get("ssl.truststore.certificates")
    if inline is not None:
        if store_type != "PEM":
            raise keys.error("ssl.truststore.type", f"is {store_type}, but inline trusted certificates "
                             "(ssl.truststore.certificates) need ssl.truststore.type=PEM")
        if location is not None:
            raise keys.error("ssl.truststore.location", "both a trust store file and inline trusted "
                             "certificates (ssl.truststore.certificates) are set; set one of them")
        if password is not None:
            raise keys.error("ssl.truststore.password", "cannot be set for PEM trusted certificates")
        return _pem_text(_pem_certificates(inline.encode(), keys, "ssl.truststore.certificates"))
    if location is None:
        if password is not None:
            raise keys.error("ssl.truststore.password", "is set but ssl.truststore.location is not")
        return None
    data = _read(keys, "ssl.truststore.location")
    if store_type == "JKS" or data.startswith(_JKS_MAGIC):
        raise _jks_error(keys, "ssl.truststore", location)
    if store_type == "PEM":
        if password is not None:
            raise keys.error("ssl.truststore.password", "cannot be set for a PEM trust store")
        return _pem_text(_pem_certificates(data, keys, "ssl.truststore.location"))
    try:
        _, cert, extra = pkcs12.load_key_and_certificates(data, password.encode() if password is not None else None)
    except ValueError as e:
        raise keys.error("ssl.truststore.password", f"cannot open the PKCS12 trust store {location}: wrong or "
                         f"missing password, or not a PKCS12 file ({e})") from None
    certificates = ([cert] if cert is not None else []) + list(extra)
    if not certificates:
        raise keys.error("ssl.truststore.location", f"the PKCS12 trust store {location} holds no certificate")
    return _pem_text(certificates)


def _pem_text(certificates: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)


# --- protocols and cipher suites -------------------------------------------------------------

def _set_protocols_and_ciphers(context: ssl.SSLContext, keys: _ListenerKeys) -> None:
    protocols = [str(p) for p in keys.get("ssl.enabled.protocols") or []]
    unknown = [p for p in protocols if p not in _TLS_VERSIONS]
    if unknown or not protocols:
        raise keys.error("ssl.enabled.protocols", f"{','.join(protocols) or 'empty'}: expected TLSv1.2, TLSv1.3 "
                         "or both")
    versions = sorted(_TLS_VERSIONS[p] for p in protocols)
    low, high = versions[0], versions[-1]
    suites = [str(s).strip() for s in keys.get("ssl.cipher.suites") or [] if str(s).strip()]
    if suites:
        tls13, tls12 = _split_cipher_suites(suites, keys)
        # Python cannot narrow TLS 1.3's suites; as Java, naming none of them turns TLS 1.3 off,
        # and naming only TLS 1.3 suites turns TLS 1.2 off.
        if not tls13:
            high = min(high, ssl.TLSVersion.TLSv1_2)
        elif set(tls13) != _tls13_suites():
            log.warning("%s: the TLS 1.3 cipher suites cannot be narrowed; all of %s stay enabled",
                        keys.name("ssl.cipher.suites"), ", ".join(sorted(_tls13_suites())))
        if tls12:
            try:
                context.set_ciphers(":".join(tls12))
            except ssl.SSLError:
                raise keys.error("ssl.cipher.suites", f"none of {', '.join(suites)} can be used") from None
        else:
            low = max(low, ssl.TLSVersion.TLSv1_3)
        if low > high:
            raise keys.error("ssl.cipher.suites", f"no cipher suite given is usable with ssl.enabled.protocols="
                             f"{','.join(protocols)}")
    context.minimum_version = low
    context.maximum_version = high


def _split_cipher_suites(suites: list[str], keys: _ListenerKeys) -> tuple[list[str], list[str]]:
    """(TLS 1.3 suites, OpenSSL names of the older ones); unknown names raise ConfigError."""
    tls13_names = _tls13_suites()
    by_iana, openssl_names = _cipher_names()
    tls13: list[str] = []
    tls12: list[str] = []
    for suite in suites:
        if suite in tls13_names:
            tls13.append(suite)
        elif suite in by_iana:
            tls12.append(by_iana[suite])
        elif suite in openssl_names:
            tls12.append(suite)
        else:
            raise keys.error("ssl.cipher.suites", f"unknown cipher suite {suite!r} (give IANA names such as "
                             "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 or OpenSSL names such as "
                             "ECDHE-RSA-AES256-GCM-SHA384)")
    return tls13, tls12


def _all_ciphers() -> list[dict[str, Any]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("ALL:@SECLEVEL=0")
    return [dict(c) for c in context.get_ciphers()]


def _tls13_suites() -> set[str]:
    return {c["name"] for c in _all_ciphers() if c["protocol"] == "TLSv1.3"}


def _cipher_names() -> tuple[dict[str, str], set[str]]:
    """({IANA name: OpenSSL name}, every OpenSSL name) of the TLS 1.2 and older suites."""
    by_iana: dict[str, str] = {}
    names: set[str] = set()
    for cipher in _all_ciphers():
        if cipher["protocol"] == "TLSv1.3":
            continue
        names.add(cipher["name"])
        iana = iana_name(cipher)
        if iana is not None:
            by_iana[iana] = cipher["name"]
    return by_iana, names


_KEY_EXCHANGE = {"kx-ecdhe": "ECDHE", "kx-dhe": "DHE", "kx-rsa": "RSA", "kx-psk": "PSK", "kx-rsa-psk": "RSA_PSK",
                 "kx-dhe-psk": "DHE_PSK", "kx-ecdhe-psk": "ECDHE_PSK"}
_AUTH = {"auth-rsa": "RSA", "auth-ecdsa": "ECDSA", "auth-dss": "DSS"}
_DIGEST = {"sha1": "SHA", "sha256": "SHA256", "sha384": "SHA384"}


def iana_name(cipher: Mapping[str, Any]) -> str | None:
    """The IANA (RFC) name of a TLS 1.2-or-older suite from ``SSLContext.get_ciphers()``'s
    description of it, as ``openssl ciphers -stdname`` shows it; None for exotic ones."""
    kx = _KEY_EXCHANGE.get(cipher.get("kea") or "")
    auth = cipher.get("auth") or ""
    symmetric = (cipher.get("symmetric") or "").upper().replace("-", "_")
    if kx is None or not symmetric:
        return None
    if auth == "auth-null":
        if kx not in ("DHE", "ECDHE"):
            return None
        exchange = {"DHE": "DH", "ECDHE": "ECDH"}[kx] + "_anon"
    elif kx == "RSA" or kx.endswith("PSK"):
        exchange = kx
        if kx == "DHE_PSK" and cipher["name"].endswith("CCM8"):
            exchange = "PSK_DHE"  # RFC 6655's name for these two
    elif auth in _AUTH:
        exchange = f"{kx}_{_AUTH[auth]}"
    else:
        return None
    name = cipher["name"]
    if symmetric.startswith("DES_EDE3"):
        symmetric = "3DES_EDE_CBC"
    if cipher.get("aead"):
        if symmetric.endswith("_CCM"):
            mac = ""
            if name.endswith("CCM8"):
                symmetric += "_8"
        elif symmetric == "CHACHA20_POLY1305":
            mac = "SHA256"
        else:
            mac = name.rsplit("-", 1)[-1] if name.endswith(("-SHA256", "-SHA384")) else ""
            if not mac:
                return None
    else:
        mac = _DIGEST.get(cipher.get("digest") or "", "")
        if not mac:
            return None
    return f"TLS_{exchange}_WITH_{symmetric}" + (f"_{mac}" if mac else "")


# --- principals ------------------------------------------------------------------------------

class NoMatchingRule(ValueError):
    """No ``ssl.principal.mapping.rules`` rule applies to a certificate's subject (Kafka refuses
    the client then)."""


_RULE_PATTERN = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_RULE_SPLITTER = re.compile(r"\s*(" + _RULE_PATTERN + r")\s*(,\s*|$)")
_RULE_PARSER = re.compile(_RULE_PATTERN)
_BACK_REFERENCE = re.compile(r"\$(\d+)")
_JAVA_NAMED_GROUP = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z])")


class _Rule:
    """One mapping rule: DEFAULT (the DN as is) or ``RULE:pattern/replacement/[LU]``."""

    def __init__(self, pattern: str | None = None, replacement: str | None = None, case: str = "") -> None:
        self.is_default = pattern is None
        self.source = pattern
        # Java writes a named group (?<name>...), Python (?P<name>...).
        self.pattern = re.compile(_JAVA_NAMED_GROUP.sub("(?P<", pattern)) if pattern is not None else None
        self.replacement = replacement
        self.case = case

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        groups = self.pattern.groups
        replacement = _escape_literal_back_references(self.replacement or "", groups)
        result = self.pattern.sub(lambda m: _java_replacement(m, replacement), dn)
        if self.case == "L":
            return result.lower()
        if self.case == "U":
            return result.upper()
        return result

    def __str__(self) -> str:
        if self.is_default:
            return "DEFAULT"
        text = "RULE:" + (self.source or "")
        if self.replacement is not None:
            text += "/" + self.replacement
        if self.case:
            text += "/" + self.case
        return text


def _escape_literal_back_references(unescaped: str, groups: int) -> str:
    """As Kafka (from Apache NiFi): a ``$n`` naming no capturing group stays literal text."""
    if groups == 0:
        return unescaped
    value = unescaped
    # Positions come from the unescaped text while ``value`` grows, as in Kafka's code.
    for match in _BACK_REFERENCE.finditer(unescaped):
        number = match.group(1)
        if number.startswith("0"):
            continue
        index = int(number)
        while index > groups and index >= 10:
            index //= 10
        if index > groups:
            start = match.start(1)
            value = value[:start - 1] + "\\" + value[start - 1:]
    return value


def _java_replacement(match: re.Match[str], replacement: str) -> str:
    """Expand a replacement as Java's ``Matcher.appendReplacement``: ``\\x`` is x, ``$n``
    a group (digits taken while the number names a group), ``${name}`` a named group."""
    out: list[str] = []
    i, n, groups = 0, len(replacement), match.re.groups
    while i < n:
        c = replacement[i]
        if c == "\\":
            i += 1
            if i >= n:
                raise ValueError("character to be escaped is missing")
            out.append(replacement[i])
            i += 1
        elif c == "$":
            i += 1
            if i >= n:
                raise ValueError("illegal group reference: group index is missing")
            if replacement[i] == "{":
                end = replacement.find("}", i)
                if end < 0:
                    raise ValueError("named capturing group is missing trailing '}'")
                out.append(match.group(replacement[i + 1:end]) or "")
                i = end + 1
                continue
            if not replacement[i].isdigit():
                raise ValueError("illegal group reference")
            number = int(replacement[i])
            i += 1
            while i < n and replacement[i].isdigit() and number * 10 + int(replacement[i]) <= groups:
                number = number * 10 + int(replacement[i])
                i += 1
            if number > groups:
                raise ValueError(f"no group {number}")
            out.append(match.group(number) or "")
        else:
            out.append(c)
            i += 1
    return "".join(out)


class PrincipalMapper:
    """Kafka's ``SslPrincipalMapper``: ``ssl.principal.mapping.rules`` applied to a DN."""

    def __init__(self, rules: str | None) -> None:
        """Parse ``rules`` (None means DEFAULT); raise ValueError for a malformed rule."""
        parsed = [self._parse(rule) for rule in self._split("DEFAULT" if rules is None else rules)]
        self.rules = [rule for rule in parsed if rule is not None]

    @classmethod
    def from_config(cls, keys: _ListenerKeys) -> PrincipalMapper:
        """The mapper of a listener's ``ssl.principal.mapping.rules`` (ConfigError when malformed)."""
        try:
            return cls(keys.get("ssl.principal.mapping.rules"))
        except (ValueError, re.error) as e:
            raise keys.error("ssl.principal.mapping.rules", str(e)) from None

    @staticmethod
    def _split(rules: str) -> list[str]:
        return [m.group(1) for m in _RULE_SPLITTER.finditer(rules.strip())]

    @staticmethod
    def _parse(rule: str) -> _Rule | None:
        match = _RULE_PARSER.match(rule)
        if match is None:
            raise ValueError(f"Invalid rule: {rule}")
        if match.end() != len(rule):
            raise ValueError(f"Invalid rule: `{rule}`, unmatched substring: `{rule[match.end():]}`")
        if match.group(1) is not None:
            return _Rule()
        if match.group(2) is not None:
            try:
                return _Rule(match.group(2), match.group(4), match.group(6) or "")
            except re.error as e:
                raise ValueError(f"Invalid rule: `{rule}`: bad regular expression: {e}") from None
        return None  # an empty rule is ignored

    def name(self, dn: str) -> str:
        """The user name of a distinguished name: the first rule that applies decides."""
        for rule in self.rules:
            name = rule.apply(dn)
            if name is not None:
                return name
        raise NoMatchingRule(f"No rules apply to {dn}, rules [{', '.join(map(str, self.rules))}]")

    def principal_from_certificate(self, der: bytes | None) -> str:
        """``User:<mapped subject>`` of a client certificate (DER); ANONYMOUS without one."""
        if der is None:
            return ANONYMOUS
        return "User:" + self.name(rfc2253_subject(der))

    def __str__(self) -> str:
        return f"SslPrincipalMapper(rules = [{', '.join(map(str, self.rules))}])"


def principal_from_certificate(der: bytes | None, rules: str = "DEFAULT") -> str:
    """The principal of a TLS client as Kafka names it: ``User:ANONYMOUS`` without a
    certificate, else ``User:`` and its subject (RFC 2253) mapped through ``rules``."""
    return PrincipalMapper(rules).principal_from_certificate(der)


#: The attribute types RFC 2253 (and Java's X500Principal) write by keyword; others by OID.
_KEYWORDS = {NameOID.COMMON_NAME: "CN", NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST",
             NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COUNTRY_NAME: "C",
             NameOID.STREET_ADDRESS: "STREET", NameOID.DOMAIN_COMPONENT: "DC", NameOID.USER_ID: "UID"}
_STRING_CODECS = {12: "utf-8", 18: "ascii", 19: "ascii", 20: "latin-1", 22: "ascii", 26: "ascii",
                  28: "utf-32-be", 30: "utf-16-be"}


def rfc2253_subject(der: bytes) -> str:
    """A certificate's subject as Java's ``X500Principal.getName()`` (RFC 2253) writes it:
    most specific RDN first, keywords for the RFC 2253 types, ``OID=#hex`` for the rest."""
    subject = x509.load_der_x509_certificate(der).subject
    return ",".join("+".join(_attribute(a) for a in rdn) for rdn in reversed(subject.rdns))


def _attribute(attr: x509.NameAttribute[Any]) -> str:
    keyword = _KEYWORDS.get(attr.oid)
    if keyword is not None and isinstance(attr.value, str):
        return f"{keyword}={_escape(attr.value)}"
    # The value's ASN.1 string type (cryptography keeps it privately; UTF8String otherwise).
    tag = int(getattr(getattr(attr, "_type", None), "value", 12))
    value = attr.value
    raw = value if isinstance(value, bytes) else value.encode(_STRING_CODECS.get(tag, "utf-8"))
    return f"{attr.oid.dotted_string}=#{_der(tag, raw).hex()}"


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _escape(value: str) -> str:
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;' or (i == 0 and c in "# ") or (i == len(value) - 1 and c == " "):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)
