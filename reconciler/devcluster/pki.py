"""Certificates and keys for a loopback control plane, made with ``cryptography``.

kube-apiserver has no insecure port, so a local cluster needs TLS and an authenticator anyway.
We make one throw-away CA per cluster and sign with it:

* one serving certificate (SANs ``localhost``, ``127.0.0.1``, ``::1`` and the in-cluster
  ``kubernetes.default.svc`` names) shared by kube-apiserver, kube-scheduler and
  kube-controller-manager, so every health endpoint can be verified against the CA;
* client certificates that map to real identities: the admin (group ``system:masters``, which
  RBAC always allows), ``system:kube-scheduler`` and ``system:kube-controller-manager``, whose
  RBAC roles the apiserver bootstraps itself, so RBAC is on and the components run with the
  rights they have in a real cluster;
* an RSA key pair that signs and verifies service-account tokens (the controller manager gets
  per-controller tokens through the TokenRequest API).

ECDSA P-256 keys keep generation in milliseconds. Everything is written with mode 0600 under
one directory that lives and dies with the cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)
_SERVING_DNS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_SERVING_IPS = ("127.0.0.1", "::1", "10.0.0.1")


@dataclass(frozen=True, slots=True)
class CertPair:
    """A PEM certificate and its PEM private key on disk."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class ClusterPKI:
    """Every file the components and clients need."""

    ca: CertPair
    serving: CertPair
    admin: CertPair
    scheduler: CertPair
    controller_manager: CertPair
    service_account_key: Path
    service_account_pub: Path


def generate(directory: Path) -> ClusterPKI:
    """Make a fresh CA and every certificate and key under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("cu-reconciler devcluster CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = CertPair(directory / "ca.crt", directory / "ca.key")
    _write_pair(ca, ca_cert, ca_key)

    def leaf(
        stem: str, common_name: str, orgs: tuple[str, ...], *, server: bool = False
    ) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, orgs))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    if server
                    else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if server:
            sans: list[x509.GeneralName] = [x509.DNSName(d) for d in _SERVING_DNS]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in _SERVING_IPS]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write_pair(pair, builder.sign(ca_key, hashes.SHA256()), key)
        return pair

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path, sa_pub_path = directory / "sa.key", directory / "sa.pub"
    _write(
        sa_key_path,
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    _write(
        sa_pub_path,
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return ClusterPKI(
        ca=ca,
        serving=leaf("serving", "kube-apiserver", (), server=True),
        admin=leaf("admin", "cu-reconciler-admin", ("system:masters",)),
        scheduler=leaf("kube-scheduler", "system:kube-scheduler", ()),
        controller_manager=leaf("kube-controller-manager", "system:kube-controller-manager", ()),
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _write_pair(pair: CertPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(
        pair.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
