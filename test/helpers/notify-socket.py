#!/usr/bin/env python3
"""systemd's side of sd_notify(3), for tests: binds an AF_UNIX datagram socket at argv[1] and
prints each message as a JSON line {"pid": sender pid, "fields": [...]} on stdout. The sender's
pid comes from the kernel (SO_PASSCRED), as systemd reads it. File descriptors sent along are
closed at once: that is how systemd-notify's barrier (BARRIER=1 with a pipe) learns the message
was read. Node cannot bind a datagram unix socket, so this one helper is Python."""
import array, json, os, socket, struct, sys

sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
sock.bind(sys.argv[1])
print(json.dumps({"listening": sys.argv[1]}), flush=True)
ucred = struct.calcsize("3i")
while True:
    data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(ucred) + socket.CMSG_SPACE(16 * 4))
    pid = None
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", payload[:ucred])[0]
        elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    fields = [f for f in data.decode("utf-8", "replace").split("\n") if f]
    print(json.dumps({"pid": pid, "fields": fields}), flush=True)
