#!/usr/bin/env python3
"""The caller side of `cargo xtask bench tls`: a TLS client and server
joined by memory BIOs in this one process (no network), so each
SSLObject.write is one SSL_write_ex of a 548-byte SIP REGISTER and its
encryption, nothing else. Prints "ready", then for each "run N" line on
stdin answers "ns_per_call X": CPU time (user + system, where a uprobe's
cost lands) per write, the encrypted bytes drained after each.

usage: tls_driver.py CERT KEY
"""
import ssl
import sys
import time

cert, key = sys.argv[1:3]
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(cert, key)
client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_ctx.check_hostname = False
client_ctx.verify_mode = ssl.CERT_NONE
c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
client = client_ctx.wrap_bio(c_in, c_out)
server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
for _ in range(10):
    done = 0
    for end in (client, server):
        try:
            end.do_handshake()
            done += 1
        except ssl.SSLWantReadError:
            pass
    s_in.write(c_out.read())
    c_in.write(s_out.read())
    if done == 2:
        break
else:
    sys.exit("TLS handshake over memory BIOs did not finish")

MESSAGE = (
    b"REGISTER sip:sipscope.test SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 10.0.0.2:40000;branch=z9hG4bK-bench;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:1001@sipscope.test>;tag=bench\r\n"
    b"To: <sip:1001@sipscope.test>\r\nCall-ID: 0123456789abcdef0123456789abcdef\r\n"
    b"CSeq: 1 REGISTER\r\nContact: <sip:1001@10.0.0.2:40000;transport=tls>\r\n"
    b"Expires: 60\r\nUser-Agent: sipscope-bench\r\n"
    b"Authorization: Digest username=\"1001\", realm=\"sipscope.test\", "
    b"nonce=\"0123456789abcdef0123456789abcdef\", uri=\"sip:sipscope.test\", "
    b"response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\r\n"
    b"Content-Length: 0\r\n\r\n"
)

print("ready", len(MESSAGE), flush=True)
for line in sys.stdin:
    n = int(line.split()[1])
    start = time.process_time_ns()
    for _ in range(n):
        client.write(MESSAGE)
        c_out.read()
    spent = time.process_time_ns() - start
    print("ns_per_call", spent // n, flush=True)
