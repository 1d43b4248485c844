#!/usr/bin/env python3
"""Independent generator of TPM 2.0 software-crypto known-answer vectors.

Written from the TPM 2.0 Library spec text (Part 1 §11.4.10.2 KDFa, §11.4.10.3 KDFe, §24 credential protection),
NOT from the TypeScript code. Uses hashlib/hmac for the KDFs and HMAC, and the `cryptography` package only for
the AES-CFB and EC point primitives. Output: tpm2-crypto-vectors.json (committed; tests read it).

    python3 test/vectors/gen_tpm2_vectors.py > test/vectors/tpm2-crypto-vectors.json
"""
import hashlib, hmac, json, struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import serialization

ALG_ID = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}


def kdfa(h, key, label, ctx_u, ctx_v, bits):
    out = b""
    i = 1
    lab = label.encode() + b"\x00"
    nbytes = (bits + 7) // 8
    while len(out) < nbytes:
        out += hmac.new(key, struct.pack(">I", i) + lab + ctx_u + ctx_v + struct.pack(">I", bits), h).digest()
        i += 1
    out = bytearray(out[:nbytes])
    if bits % 8:
        out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)


def kdfe(h, z, label, pu, pv, bits):
    out = b""
    i = 1
    lab = label.encode() + b"\x00"
    nbytes = (bits + 7) // 8
    while len(out) < nbytes:
        out += hashlib.new(h, struct.pack(">I", i) + z + lab + pu + pv).digest()
        i += 1
    out = bytearray(out[:nbytes])
    if bits % 8:
        out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)


def id_object(h, sym_bits, seed, name, cred):
    sym_key = kdfa(h, seed, "STORAGE", name, b"", sym_bits)
    enc = Cipher(algorithms.AES(sym_key), modes.CFB(b"\x00" * 16)).encryptor()
    enc_identity = enc.update(struct.pack(">H", len(cred)) + cred) + enc.finalize()
    hmac_key = kdfa(h, seed, "INTEGRITY", b"", b"", hashlib.new(h).digest_size * 8)
    integrity = hmac.new(hmac_key, enc_identity + name, h).digest()
    return struct.pack(">H", len(integrity)) + integrity + enc_identity


def det(tag, n):
    """Deterministic test bytes: SHA-512 stream of a tag."""
    out = b""
    c = 0
    while len(out) < n:
        out += hashlib.sha512(f"{tag}/{c}".encode()).digest()
        c += 1
    return out[:n]


def name_of(h, data):
    return struct.pack(">H", ALG_ID[h]) + hashlib.new(h, data).digest()


vec = {"provenance": "test/vectors/gen_tpm2_vectors.py (python hashlib/hmac + cryptography for AES-CFB/EC)", "kdfa": [], "kdfe": [], "idObject": [], "eccMakeCredential": [], "name": []}

for h, label, bits in [("sha256", "STORAGE", 128), ("sha256", "INTEGRITY", 256), ("sha1", "ATH", 160), ("sha384", "XOR", 300), ("sha512", "CFB", 1000), ("sha256", "SECRET", 7)]:
    key, u, v = det("key" + h + label, 32), det("u" + label, 16), det("v" + label, 9)
    vec["kdfa"].append({"hash": h, "key": key.hex(), "label": label, "contextU": u.hex(), "contextV": v.hex(), "bits": bits, "out": kdfa(h, key, label, u, v, bits).hex()})
for h, label, bits in [("sha256", "IDENTITY", 256), ("sha384", "IDENTITY", 384), ("sha256", "DUPLICATE", 259), ("sha1", "SECRET", 512)]:
    z, u, v = det("z" + h, 48), det("pu" + h, 32), det("pv" + h, 32)
    vec["kdfe"].append({"hash": h, "z": z.hex(), "label": label, "partyUInfo": u.hex(), "partyVInfo": v.hex(), "bits": bits, "out": kdfe(h, z, label, u, v, bits).hex()})

for h, sym_bits, seed_len in [("sha256", 128, 32), ("sha256", 128, 16), ("sha384", 256, 48), ("sha1", 128, 20)]:
    seed = det("seed" + h + str(seed_len), seed_len)
    name = name_of("sha256", det("akpub" + h, 280))
    cred = det("cred" + h, hashlib.new(h).digest_size)
    vec["idObject"].append({"nameAlg": h, "symKeyBits": sym_bits, "seed": seed.hex(), "objectName": name.hex(), "credential": cred.hex(), "idObject": id_object(h, sym_bits, seed, name, cred).hex()})

for curve, cname, size, h, sym_bits in [(ec.SECP256R1(), "P-256", 32, "sha256", 128), (ec.SECP384R1(), "P-384", 48, "sha384", 256)]:
    ek_priv = ec.derive_private_key(int.from_bytes(det("ekpriv" + cname, size), "big") % (2**(size * 8 - 8)) + 1, curve)
    eph_d = int.from_bytes(det("eph" + cname, size), "big") % (2**(size * 8 - 8)) + 1
    eph_priv = ec.derive_private_key(eph_d, curve)
    ekn = ek_priv.public_key().public_numbers()
    ephn = eph_priv.public_key().public_numbers()
    ek_x, ek_y = ekn.x.to_bytes(size, "big"), ekn.y.to_bytes(size, "big")
    eph_x, eph_y = ephn.x.to_bytes(size, "big"), ephn.y.to_bytes(size, "big")
    z = eph_priv.exchange(ec.ECDH(), ek_priv.public_key())  # x-coordinate, curve-size bytes
    seed = kdfe(h, z, "IDENTITY", eph_x, ek_x, hashlib.new(h).digest_size * 8)
    name = name_of("sha256", det("ak" + cname, 280))
    cred = det("eccred" + cname, 32)
    vec["eccMakeCredential"].append({
        "curve": cname, "nameAlg": h, "symKeyBits": sym_bits,
        "ekX": ek_x.hex(), "ekY": ek_y.hex(), "ekPrivate": ek_priv.private_numbers().private_value.to_bytes(size, "big").hex(),
        "ephemeralPrivate": eph_d.to_bytes(size, "big").hex(), "objectName": name.hex(), "credential": cred.hex(),
        "seed": seed.hex(),
        "credentialBlob": id_object(h, sym_bits, seed, name, cred).hex(),
        "secret": (struct.pack(">H", size) + eph_x + struct.pack(">H", size) + eph_y).hex(),
    })

for h in ["sha256", "sha384"]:
    pub = det("tpmtpub" + h, 120)
    pub = pub[:2] + struct.pack(">H", ALG_ID[h]) + pub[4:]
    vec["name"].append({"tpmtPublic": pub.hex(), "name": name_of(h, pub).hex()})

print(json.dumps(vec, indent=1))
