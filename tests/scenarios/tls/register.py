#!/usr/bin/env python3
"""A SIP UA that registers over TLS with digest authentication (RFC 3261
§22, RFC 2617 without qop, as tests/fixtures/scenarios/registrar.cfg
challenges), for tests/scenarios/tls.rs. Standard library only.

usage: register.py SERVER_IP PORT LOCAL_IP USER PASSWORD

Sends REGISTER, answers a 401 once with credentials, and prints the
status line of every response; exits 0 on 200, 1 on anything else.
The server certificate is self-signed for the test: not verified.
"""
import hashlib
import re
import socket
import ssl
import sys
import uuid


def read_message(stream, buf):
    """One SIP message framed by Content-Length (RFC 3261 §18.3)."""
    while b"\r\n\r\n" not in buf:
        chunk = stream.recv(4096)
        if not chunk:
            raise SystemExit("connection closed by the registrar")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = stream.recv(4096)
        if not chunk:
            raise SystemExit("connection closed by the registrar")
        rest += chunk
    return head.decode(), rest[length:]


def main():
    server, port, local, user, password = sys.argv[1:6]
    port = int(port)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((server, port), timeout=10, source_address=(local, 0))
    tls = ctx.wrap_socket(raw)
    lport = tls.getsockname()[1]
    call_id = uuid.uuid4().hex
    uri = "sip:sipscope.test"

    def register(cseq, auth):
        msg = (
            f"REGISTER {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS {local}:{lport};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{user}@sipscope.test>;tag={call_id[:8]}\r\n"
            f"To: <sip:{user}@sipscope.test>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{user}@{local}:{lport};transport=tls>\r\n"
            "Expires: 60\r\n"
            f"{auth}"
            "User-Agent: sipscope-tls-test\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        # Two writes: the agent must join a message split over SSL_write calls.
        half = len(msg) // 2
        tls.sendall(msg[:half])
        tls.sendall(msg[half:])

    buf = b""
    register(1, "")
    head, buf = read_message(tls, buf)
    print(head.splitlines()[0], flush=True)
    if not head.startswith("SIP/2.0 401"):
        return 1
    m = re.search(r'(?im)^WWW-Authenticate:\s*Digest\s+(.*)$', head)
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', m.group(1)))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    auth = (
        f'Authorization: Digest username="{user}", realm="{realm}", '
        f'nonce="{nonce}", uri="{uri}", response="{response}", algorithm=MD5\r\n'
    )
    register(2, auth)
    head, buf = read_message(tls, buf)
    print(head.splitlines()[0], flush=True)
    tls.close()
    return 0 if head.startswith("SIP/2.0 200") else 1


if __name__ == "__main__":
    sys.exit(main())
