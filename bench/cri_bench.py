#!/usr/bin/python3
"""CRI benchmark client (Debian's python3-grpcio; stubs generated from the vendored CRI proto).

Usage: cri_bench.py SOCKET IMAGE RUNC_ROOT DAEMON_PID [CONTAINERS]

Prints a table: RSS of the daemon idle, then with CONTAINERS running containers (10 per pod);
ListContainers and ContainerStatus requests/s; the round trip of `true` run through Exec and the
streaming server (WebSocket v4.channel.k8s.io) against a bare `runc exec` on the same container.
Removes its pods at the end, also on failure.
"""
import base64
import importlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

import grpc
from grpc_tools import protoc

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "../crates/podway-cri/tests/python")
PER_POD = 10
DURATION = 3.0
ROUNDS = 30


def stubs(out_dir):
    if protoc.main(["protoc", "-I" + PROTO_DIR, "--python_out=" + out_dir,
                    "--grpc_python_out=" + out_dir, os.path.join(PROTO_DIR, "api.proto")]):
        sys.exit("protoc failed")
    sys.path.insert(0, out_dir)
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


def rss_mib(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def rate(call):
    """Calls per second of `call` over DURATION seconds."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < DURATION:
        call()
        n += 1
    return n / (time.perf_counter() - start)


def median_ms(run):
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("stream closed")
        buf += chunk
    return buf


def ws_exec(url):
    """Follows an exec URL over WebSocket (v4.channel.k8s.io) until the status message."""
    u = urllib.parse.urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
                      % (path, u.netloc, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += read_exact(sock, 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("upgrade refused: %r" % head)
        while True:
            b0, b1 = read_exact(sock, 2)
            length = b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", read_exact(sock, 2))[0]
            elif length == 127:
                length = struct.unpack(">Q", read_exact(sock, 8))[0]
            payload = read_exact(sock, length)
            opcode = b0 & 0x0F
            if opcode == 8:
                return
            if opcode in (1, 2) and payload[:1] == b"\x03":
                if b"Success" not in payload:
                    raise RuntimeError("exec failed: %r" % payload)
                return
    finally:
        sock.close()


def main(sock_path, image, runc_root, daemon_pid, count="100"):
    count = int(count)
    with tempfile.TemporaryDirectory() as gen:
        pb, rpc = stubs(gen)
        channel = grpc.insecure_channel("unix://" + sock_path)
        rt = rpc.RuntimeServiceStub(channel)
        rt.Version(pb.VersionRequest(version="0.1.0"), timeout=10)
        rows = [("daemon RSS, idle", "%.1f MiB" % rss_mib(daemon_pid))]
        pods, containers = [], []
        try:
            for p in range((count + PER_POD - 1) // PER_POD):
                sandbox_config = pb.PodSandboxConfig(
                    metadata=pb.PodSandboxMetadata(name="bench-%d" % p, uid="bench-%d" % p,
                                                   namespace="bench"),
                    hostname="bench-%d" % p, log_directory=os.path.join(gen, "logs", str(p)))
                sandbox = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config),
                                           timeout=60).pod_sandbox_id
                pods.append(sandbox)
                for c in range(min(PER_POD, count - len(containers))):
                    config = pb.ContainerConfig(
                        metadata=pb.ContainerMetadata(name="c%d" % c),
                        image=pb.ImageSpec(image=image), command=["sleep", "100000"],
                        log_path="c%d.log" % c)
                    cid = rt.CreateContainer(pb.CreateContainerRequest(
                        pod_sandbox_id=sandbox, config=config, sandbox_config=sandbox_config),
                        timeout=60).container_id
                    rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
                    containers.append(cid)
            running = sum(1 for c in rt.ListContainers(pb.ListContainersRequest(),
                                                       timeout=30).containers
                          if c.state == pb.CONTAINER_RUNNING)
            rows.append(("daemon RSS, %d running containers" % running,
                         "%.1f MiB" % rss_mib(daemon_pid)))
            rows.append(("ListContainers (%d containers)" % running, "%.0f req/s" % rate(
                lambda: rt.ListContainers(pb.ListContainersRequest(), timeout=30))))
            target = containers[0]
            rows.append(("ContainerStatus", "%.0f req/s" % rate(
                lambda: rt.ContainerStatus(pb.ContainerStatusRequest(container_id=target),
                                           timeout=30))))
            rows.append(("ListContainerStats (%d containers)" % running, "%.1f req/s" % rate(
                lambda: rt.ListContainerStats(pb.ListContainerStatsRequest(), timeout=30))))

            def cri_exec():
                url = rt.Exec(pb.ExecRequest(container_id=target, cmd=["true"], stdout=True),
                              timeout=30).url
                ws_exec(url)

            def bare_runc():
                subprocess.run(["runc", "--root", runc_root, "exec", target, "true"], check=True)

            def exec_sync():
                out = rt.ExecSync(pb.ExecSyncRequest(container_id=target, cmd=["true"],
                                                     timeout=10), timeout=30)
                if out.exit_code != 0:
                    raise RuntimeError("ExecSync true: %d" % out.exit_code)

            via_cri = median_ms(cri_exec)
            bare = median_ms(bare_runc)
            rows.append(("Exec `true` via CRI + streaming (WebSocket), median", "%.1f ms" % via_cri))
            rows.append(("ExecSync `true`, median", "%.1f ms" % median_ms(exec_sync)))
            rows.append(("bare `runc exec true`, median", "%.1f ms" % bare))
            rows.append(("Exec via CRI / bare runc exec", "%.2fx" % (via_cri / bare)))
        finally:
            for sandbox in pods:
                try:
                    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox), timeout=120)
                    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox),
                                        timeout=120)
                except grpc.RpcError as err:
                    print("cleanup of %s: %s" % (sandbox, err), file=sys.stderr)
        width = max(len(r[0]) for r in rows)
        print("| %s | %s |" % ("measure".ljust(width), "value"))
        print("|-%s-|-------|" % ("-" * width))
        for name, value in rows:
            print("| %s | %s |" % (name.ljust(width), value))


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    main(*sys.argv[1:])
