"""The generated PKI: a chain the Go components accept and identities RBAC understands."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reconciler.devcluster import pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_leaf_is_signed_by_the_ca(tmp_path: Path) -> None:
    files = pki.generate(tmp_path)
    ca = _load(files.ca.cert)
    for pair in (files.serving, files.admin, files.scheduler, files.controller_manager):
        cert = _load(pair.cert)
        cert.verify_directly_issued_by(ca)
        assert pair.key.stat().st_mode & 0o777 == 0o600


def test_serving_certificate_covers_loopback_and_in_cluster_names(tmp_path: Path) -> None:
    cert = _load(pki.generate(tmp_path).serving.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert {"localhost", "kubernetes.default.svc"} <= set(san.get_values_for_type(x509.DNSName))
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages


def test_client_identities_map_to_rbac_subjects(tmp_path: Path) -> None:
    files = pki.generate(tmp_path)

    def subject(path: Path, oid: x509.ObjectIdentifier) -> list[str]:
        return [str(a.value) for a in _load(path).subject.get_attributes_for_oid(oid)]

    assert subject(files.admin.cert, NameOID.ORGANIZATION_NAME) == ["system:masters"]
    assert subject(files.scheduler.cert, NameOID.COMMON_NAME) == ["system:kube-scheduler"]
    assert subject(files.controller_manager.cert, NameOID.COMMON_NAME) == [
        "system:kube-controller-manager"
    ]
    assert isinstance(_load(files.ca.cert).public_key(), ec.EllipticCurvePublicKey)
    assert files.service_account_pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
