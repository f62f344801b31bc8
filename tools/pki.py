"""A throw-away certificate authority with server and client certificates, for TLS tests.

``python -m tools.pki DIR`` writes, into DIR: ``ca.pem`` (the CA certificate), ``server.pem``
(certificate chain and unencrypted key, for 127.0.0.1 and localhost), ``server-chain.pem`` and
``server-key.pem`` (separately; the key encrypted with ``PASSWORD``), ``server.p12`` (a PKCS12
key store with ``PASSWORD``), ``truststore.p12`` (the CA in PKCS12), ``client.pem`` /
``client-key.pem`` (a client certificate signed by the CA, subject ``CLIENT_DN``), and
``untrusted.pem`` / ``untrusted-key.pem`` (a client certificate from another CA).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

#: Password of the encrypted server key and of the PKCS12 stores.
PASSWORD = "kbroker-test"
#: The client certificate's subject, as Kafka renders it (RFC 2253).
CLIENT_DN = "CN=alice,OU=dev,O=kbroker,C=SE"


@dataclass(frozen=True)
class Pki:
    """Paths of the files :func:`make_pki` wrote."""

    directory: Path

    def file(self, name: str) -> Path:
        """The path of one of the files (``"ca.pem"``, ``"server.p12"``, ...)."""
        return self.directory / name

    @property
    def ca(self) -> Path:
        return self.file("ca.pem")

    @property
    def server(self) -> Path:
        return self.file("server.pem")

    @property
    def client(self) -> Path:
        return self.file("client.pem")

    @property
    def client_key(self) -> Path:
        return self.file("client-key.pem")


def _name(dn: dict[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in dn.items()])


def _cert(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
          signer: ec.EllipticCurvePrivateKey, *, ca: bool, sans: list[x509.GeneralName] | None = None,
          client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if not ca:
        usage = x509.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def make_pki(directory: Path) -> Pki:
    """Write a CA, a server certificate and client certificates into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name({NameOID.COMMON_NAME: "kbroker test CA"})
    ca = _cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(_name({NameOID.COMMON_NAME: "localhost"}), ca_name, server_key, ca_key, ca=False,
                   sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                         x509.IPAddress(ipaddress.ip_address("::1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_name = _name({NameOID.COUNTRY_NAME: "SE", NameOID.ORGANIZATION_NAME: "kbroker",
                         NameOID.ORGANIZATIONAL_UNIT_NAME: "dev", NameOID.COMMON_NAME: "alice"})
    client = _cert(client_name, ca_name, client_key, ca_key, ca=False, client=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_name = _name({NameOID.COMMON_NAME: "other CA"})
    untrusted_key = ec.generate_private_key(ec.SECP256R1())
    untrusted = _cert(_name({NameOID.COMMON_NAME: "mallory"}), other_name, untrusted_key, other_key, ca=False,
                      client=True)
    files = {
        "ca.pem": _pem(ca),
        "server.pem": _pem(server) + _pem(ca) + _key(server_key),
        "server-chain.pem": _pem(server) + _pem(ca),
        "server-key.pem": _key(server_key, PASSWORD),
        "server.p12": pkcs12.serialize_key_and_certificates(
            b"server", server_key, server, [ca], serialization.BestAvailableEncryption(PASSWORD.encode())),
        "truststore.p12": pkcs12.serialize_key_and_certificates(
            None, None, None, [ca], serialization.BestAvailableEncryption(PASSWORD.encode())),
        "client.pem": _pem(client),
        "client-key.pem": _key(client_key),
        "untrusted.pem": _pem(untrusted),
        "untrusted-key.pem": _key(untrusted_key),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return Pki(directory)


def main() -> None:
    """``python -m tools.pki DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    make_pki(args.directory)
    print(f"wrote a test CA and certificates to {args.directory} (password {PASSWORD!r})")


if __name__ == "__main__":
    main()
