"""SM2 signatures with SM3 (GB/T 32918.2, GM/T 0009) over the pure-Python `gmssl` package.

gmssl 3.2 has the arithmetic right but needs care around it, which this module takes:
- its CryptSM2 strips a public key's "04" prefix with `lstrip("04")`, which also eats leading
  0s and 4s of x: the key is set on the object after construction, never passed in;
- it draws the per-signature k with `random.choice`, which is not a secure generator: k comes
  from `secrets` here (a predictable k gives the private key away);
- it neither range-checks r and s nor checks the public key is on the curve, and raises on
  some malformed input: `verify` checks both first and answers False to anything malformed.
Signatures are DER `SEQUENCE { r INTEGER, s INTEGER }` (GM/T 0009), as OpenSSL, BouncyCastle
and most 国密 toolkits write them. The signer's identity is the default user id
"1234567812345678" (GM/T 0009), which gmssl's `sign_with_sm3` hard-codes.

Pure functions over hex strings and bytes: usable inside the workflow sandbox (verify only).
"""

import secrets

from gmssl import sm2 as _gmssl

_CURVE = _gmssl.default_ecc_table
N = int(_CURVE["n"], 16)
_P = int(_CURVE["p"], 16)
_A = int(_CURVE["a"], 16)
_B = int(_CURVE["b"], 16)


def _crypt(public: str, private: str = "") -> _gmssl.CryptSM2:
    c = _gmssl.CryptSM2(private_key=private, public_key="")
    c.public_key = public.lower()  # after construction: see the module docstring (lstrip)
    return c


def on_curve(public: str) -> bool:
    """128 hex digits x||y naming a point of the SM2 curve (every such point has order n)."""
    if len(public) != 128:
        return False
    try:
        x, y = int(public[:64], 16), int(public[64:], 16)
    except ValueError:
        return False
    return x < _P and y < _P and (y * y - x * x * x - _A * x - _B) % _P == 0


def valid_private(private: str) -> bool:
    """64 hex digits d with 1 <= d <= n-2 (GB/T 32918.1)."""
    if len(private) != 64:
        return False
    try:
        return 1 <= int(private, 16) <= N - 2
    except ValueError:
        return False


def public_of(private: str) -> str:
    """d·G as 128 lowercase hex digits."""
    return _crypt("")._kg(int(private, 16), _CURVE["g"])


def generate() -> tuple[str, str]:
    """A new key pair: (private, public) as 64 and 128 lowercase hex digits."""
    d = 1 + secrets.randbelow(N - 2)
    private = f"{d:064x}"
    return private, public_of(private)


def _der_int(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # one spare byte keeps the sign bit clear
    body = body[1:] if len(body) > 1 and body[0] == 0 and body[1] < 0x80 else body
    return bytes([0x02, len(body)]) + body


def _der(r: int, s: int) -> bytes:
    body = _der_int(r) + _der_int(s)
    return bytes([0x30, len(body)]) + body


def _der_decode(signature: bytes) -> tuple[int, int] | None:
    """(r, s) from a DER signature; None unless it is exactly the canonical encoding."""
    if len(signature) < 8 or signature[0] != 0x30 or signature[1] != len(signature) - 2:
        return None
    rest, values = signature[2:], []
    for _ in range(2):
        if len(rest) < 3 or rest[0] != 0x02 or rest[1] > 33 or len(rest) < 2 + rest[1]:
            return None
        values.append(int.from_bytes(rest[2 : 2 + rest[1]], "big"))
        rest = rest[2 + rest[1] :]
    r, s = values
    return (r, s) if not rest and _der(r, s) == signature else None


def sign(private: str, message: bytes) -> bytes:
    """The DER signature of `message` (hashed with SM3 and the signer's Z value, as GB/T 32918.2)."""
    if not valid_private(private):
        raise ValueError("not an SM2 private key (64 hex digits, 1 <= d <= n-2)")
    signer = _crypt(public_of(private), private)
    while True:  # gmssl answers None for the rare k that gives r = 0, r + k = n or s = 0
        k = 1 + secrets.randbelow(N - 1)
        rs = signer.sign_with_sm3(message, f"{k:064x}")
        if rs:
            return _der(int(rs[:64], 16), int(rs[64:], 16))


def verify(public: str, message: bytes, signature: bytes) -> bool:
    rs = _der_decode(signature)
    if rs is None or not on_curve(public):
        return False
    r, s = rs
    if not (1 <= r < N and 1 <= s < N):
        return False
    try:
        return bool(_crypt(public).verify_with_sm3(f"{r:064x}{s:064x}", message))
    except (TypeError, ValueError):  # a sum at infinity inside gmssl: no valid signature gets there
        return False
