#!/usr/bin/python3
"""A CRI client podway did not write: Python grpcio with stubs generated from the CRI proto.

Usage: cri_client.py SOCKET IMAGE LOG_DIR

Generates the stubs from api.proto (next to this script) into a temporary folder with
grpc_tools.protoc, then drives one pod's lifecycle over unix://SOCKET and prints one line per
step ("step: value"); exits non-zero on the first failed call.
"""
import importlib
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def stubs(out_dir):
    """Generates and imports api_pb2 and api_pb2_grpc."""
    code = protoc.main([
        "grpc_tools.protoc",
        "-I" + HERE,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
        os.path.join(HERE, "api.proto"),
    ])
    if code != 0:
        sys.exit("protoc failed with %d" % code)
    sys.path.insert(0, out_dir)
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


def main(socket, image, log_dir):
    with tempfile.TemporaryDirectory() as gen:
        pb, rpc = stubs(gen)
        channel = grpc.insecure_channel("unix://" + socket)
        rt = rpc.RuntimeServiceStub(channel)

        version = rt.Version(pb.VersionRequest(version="0.1.0"), timeout=10)
        print("version: %s %s %s" % (version.runtime_name, version.runtime_api_version,
                                     version.version))

        sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name="py", uid="uid-py", namespace="python"),
            hostname="py",
            log_directory=log_dir,
            labels={"client": "python"},
        )
        sandbox = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config),
                                   timeout=60).pod_sandbox_id
        print("sandbox: %d hex characters" % len(sandbox))

        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="main"),
            image=pb.ImageSpec(image=image),
            command=["sleep", "1000"],
            log_path="main/0.log",
            labels={"client": "python"},
        )
        container = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sandbox, config=config, sandbox_config=sandbox_config),
            timeout=60).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=container), timeout=60)
        print("started: %s" % (container != ""))

        listed = rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
            label_selector={"client": "python"})), timeout=10).containers
        print("listed: %s" % " ".join(
            "%s=%s" % (c.metadata.name, pb.ContainerState.Name(c.state)) for c in listed))

        out = rt.ExecSync(pb.ExecSyncRequest(
            container_id=container, cmd=["sh", "-c", "echo out-$((6*7)); echo err >&2; exit 3"],
            timeout=10), timeout=30)
        print("exec_sync: exit=%d stdout=%s stderr=%s" % (
            out.exit_code, out.stdout.decode().strip(), out.stderr.decode().strip()))

        try:
            rt.ContainerStatus(pb.ContainerStatusRequest(container_id="0" * 64), timeout=10)
            print("unknown container: found?")
        except grpc.RpcError as err:
            print("unknown container: %s" % err.code().name)

        rt.StopContainer(pb.StopContainerRequest(container_id=container, timeout=1), timeout=60)
        status = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=container),
                                    timeout=10).status
        print("stopped: %s" % pb.ContainerState.Name(status.state))
        rt.RemoveContainer(pb.RemoveContainerRequest(container_id=container), timeout=60)
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox), timeout=60)
        left = rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items
        print("removed: %d sandboxes left" % len(left))
        channel.close()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
