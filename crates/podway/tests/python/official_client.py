#!/usr/bin/python3
"""Drives podway with the official Kubernetes Python client (Debian's python3-kubernetes):
exec without and with stdin, and port-forward, the way its users write them. Prints one line per
check for the Rust test to assert on. Usage: official_client.py KUBECONFIG POD"""
import sys

from kubernetes import client, config
from kubernetes.stream import portforward, stream


def main():
    kubeconfig, pod = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()

    phase = api.read_namespaced_pod(pod, "default").status.phase
    print(f"phase {phase}")

    # exec: both streams and the exit code (the client picks v4.channel.k8s.io over WebSocket).
    resp = stream(api.connect_get_namespaced_pod_exec, pod, "default",
                  command=["sh", "-c", "echo out; echo err >&2; exit 3"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=30)
    print(f"exec stdout {resp.read_stdout().strip()}")
    print(f"exec stderr {resp.read_stderr().strip()}")
    print(f"exec returncode {resp.returncode}")

    # exec with stdin: a line goes in, the answer comes out.
    resp = stream(api.connect_get_namespaced_pod_exec, pod, "default",
                  command=["sh", "-c", "read line; echo \"got $line\""],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("from python\n")
    answer = ""
    while resp.is_open() and "\n" not in answer:
        resp.update(timeout=10)
        answer += resp.read_stdout()
    resp.close()
    print(f"stdin answer {answer.strip()}")

    # port-forward: the WebSocket port-forward protocol (one channel pair per port).
    pf = portforward(api.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    body = data.split(b"\r\n\r\n", 1)[-1].decode().strip()
    print(f"portforward body {body}")
    error = pf.error(8080)
    print(f"portforward error {error}")


if __name__ == "__main__":
    main()
