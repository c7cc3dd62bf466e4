"""A test PKI built with python3-cryptography.

TestPKI(dir) creates a root CA ("shoji test root CA") and can issue leaves:
  pki.leaf("good.test", sans=["good.test", "www.good.test"])
  pki.leaf("x", expired=True)            # notAfter in the past
  pki.self_signed("selfsigned.test")     # not issued by the root
  pki.leaf("trustedsourceserver_imqa01", sans=[])   # CN only
Every issued pair is written as PEM files (cert, key) under `dir`, and
returned as a CertPair with the paths and the x509 object. The root CA
certificate is at pki.ca_cert_path: give it to the agent as --upstream-ca.
"""
import datetime
import ipaddress
import os
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class CertPair:
    name: str
    cert_path: str
    key_path: str
    cert: x509.Certificate


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _key(kind):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _san_entries(names):
    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _write_pem(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


class TestPKI:
    __test__ = False  # not a pytest test class

    def __init__(self, directory, key_kind="rsa"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.key_kind = key_kind
        self._lock = threading.Lock()
        self._serial = 1000
        self.ca_key = _key(key_kind)
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "shoji test root CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shoji tests"),
        ])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_cert_path = os.path.join(self.dir, "test-root-ca.crt")
        self.ca_key_path = os.path.join(self.dir, "test-root-ca.key")
        _write_pem(self.ca_cert_path, self.ca_cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(self.ca_key_path, self._key_pem(self.ca_key), 0o600)

    def _next_serial(self):
        with self._lock:
            self._serial += 1
            return self._serial

    @staticmethod
    def _key_pem(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def _save(self, label, cert, key):
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
        cp = os.path.join(self.dir, safe + ".crt")
        kp = os.path.join(self.dir, safe + ".key")
        _write_pem(cp, cert.public_bytes(serialization.Encoding.PEM))
        _write_pem(kp, self._key_pem(key), 0o600)
        return CertPair(label, cp, kp, cert)

    def leaf(self, cn, sans=None, expired=False, label=None, days=365):
        """A server leaf issued by the test root. sans=None -> [cn];
        sans=[] -> no SAN extension (CN only)."""
        key = _key(self.key_kind)
        now = _now()
        if expired:
            nb, na = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            nb, na = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
        sans = [cn] if sans is None else list(sans)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(nb).not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                           critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        return self._save(label or cn + ("-expired" if expired else ""), cert, key)

    def self_signed(self, cn, sans=None, label=None):
        """A self-signed server certificate (not issued by the test root)."""
        key = _key(self.key_kind)
        now = _now()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        sans = [cn] if sans is None else list(sans)
        b = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(self._next_serial())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(_san_entries(sans)), critical=False)
        cert = b.sign(key, hashes.SHA256())
        return self._save(label or cn + "-selfsigned", cert, key)


def cert_names(cert):
    """(common names, DNS SANs) of an x509.Certificate."""
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = ext.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    return cns, sans


def spki_sha256_b64(cert):
    """base64(sha256(SubjectPublicKeyInfo)) -- Chromium's
    --ignore-certificate-errors-spki-list format."""
    import base64
    import hashlib
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def verify_issued_by(cert, issuer):
    """Raises (InvalidSignature / AssertionError) unless `cert` names
    `issuer` as its issuer and carries a valid signature by its key."""
    from cryptography.hazmat.primitives.asymmetric import ec as _ec, ed25519, padding
    assert cert.issuer == issuer.subject, "issuer %s != %s" % (
        cert.issuer.rfc4514_string(), issuer.subject.rfc4514_string())
    pub = issuer.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                   cert.signature_hash_algorithm)
    elif isinstance(pub, _ec.EllipticCurvePublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, _ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        raise AssertionError("unsupported issuer key type %r" % type(pub))
