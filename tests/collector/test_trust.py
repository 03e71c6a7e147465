"""Issue 13, items 1-2: who may speak for a GPU, and where the socket may live.

Senders are real processes on a real socket: the kernel's SCM_CREDENTIALS are what the agent checks.
A second local user is `nobody` (the tests run as root: the sender subprocess calls os.setuid).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpulens.collector.backends.base import GpuIdentity, GpuReading
from gpulens.collector.socket import DatagramServer, secure_dir
from gpulens.collector.trainstats import TrainStats
from gpulens.collector.trust import Trust, decode_cred, job_scope
from gpulens.errors import GpulensError
from tests.support.servers import run_agent

DEVICES = (GpuIdentity(0, "GPU-a", "T"), GpuIdentity(1, "GPU-b", "T"))

SENDER = """
import json, os, socket, sys
path, uid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if len(sys.argv) > 5:  # wait until the test has told the agent where this pid runs
    sys.stdin.readline()
if uid != os.getuid():
    os.setgid(uid); os.setuid(uid)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(json.dumps({"v": 1, "kind": "step", "job_id": sys.argv[4], "team": "t", "rank": 0,
                         "gpu": 0, "pid": 1, "step": i, "step_seconds": 0.1}).encode(), path)
"""


def nobody() -> int:
    if os.geteuid() != 0:
        pytest.skip("needs root to send as a second user")
    return pwd.getpwnam("nobody").pw_uid


def send_as(path: Path, uid: int, job: str, n: int = 5) -> None:
    subprocess.run([sys.executable, "-c", SENDER, str(path), str(uid), str(n), job], check=True, timeout=30)


def waiting_sender(path: Path, job: str, n: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", SENDER, str(path), "0", str(n), job, "wait"]
    return subprocess.Popen(args, stdin=subprocess.PIPE)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A root-owned 0755 directory another user can reach (pytest's tmp tree is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="gpulens-trust-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def wait_for(stats: TrainStats, total: int) -> dict[str, float]:
    deadline = time.monotonic() + 10
    while True:
        results = stats.copy()[2]
        if sum(results.values()) >= total or time.monotonic() > deadline:
            return results
        time.sleep(0.02)


def test_credentials_decode() -> None:
    assert decode_cred((4242).to_bytes(4, sys.byteorder) + (7).to_bytes(4, sys.byteorder) * 2) == (4242, 7, 7)
    assert decode_cred(b"") is None


def test_uid_mode_rejects_another_users_records_through_the_real_socket(shared_dir: Path) -> None:
    """Before the fix any local user's record was believed: `nobody` moved GPU 0 to a job of its choosing."""
    uid = nobody()
    seen: list[tuple[object, ...]] = []
    stats = TrainStats(on_step=lambda *a: seen.append(a), verifier=Trust("uid", DEVICES, agent_uid=0))
    server = DatagramServer(shared_dir / "agent.sock", stats.ingest_many)
    server.start()
    try:
        send_as(server.path, uid, "spoofed")
        send_as(server.path, 0, "honest", n=3)
        results = wait_for(stats, 8)
    finally:
        server.stop()
    assert results == {"ok": 3, "malformed": 0, "rejected": 5, "over_limit": 0}
    assert {key[0] for key in stats.copy()[0]} == {"honest"}
    assert [a[2] for a in seen] == ["honest"] and seen[0][0] == "GPU-a"


def test_pid_mode_ties_the_sender_to_the_gpus_processes(shared_dir: Path) -> None:
    """A sender maps GPU 0 only while NVML lists its pid on GPU 0 (or it shares the pod/Slurm job)."""
    trust = Trust("pid", DEVICES, agent_uid=0)
    stats = TrainStats(verifier=trust)
    server = DatagramServer(shared_dir / "agent.sock", stats.ingest_many)
    server.start()
    try:
        # The sender's pid is on GPU 1 only: its record for GPU 0 is rejected.
        proc = waiting_sender(server.path, "claims-gpu0", 2)
        trust.annotate([GpuReading(DEVICES[0], pids=(1,)), GpuReading(DEVICES[1], pids=(proc.pid,))])
        proc.communicate(b"go\n", timeout=30)
        results = wait_for(stats, 2)
        assert results["rejected"] == 2 and results["ok"] == 0
        # Now on GPU 0: accepted.
        proc = waiting_sender(server.path, "runs-on-gpu0", 2)
        trust.annotate([GpuReading(DEVICES[0], pids=(proc.pid,)), GpuReading(DEVICES[1])])
        proc.communicate(b"go\n", timeout=30)
        results = wait_for(stats, 4)
    finally:
        server.stop()
    assert results["ok"] == 2 and results["rejected"] == 2
    assert {key[0] for key in stats.copy()[0]} == {"runs-on-gpu0"}


def test_pid_mode_accepts_a_process_of_the_same_pod_or_slurm_job() -> None:
    scopes = {10: "/kubepods/burstable/pod1234abcd-0000-1111-2222-333344445555", 11: None}
    scopes[20] = scopes[10]  # a second process of the same pod (e.g. the launcher)
    trust = Trust("pid", DEVICES, agent_uid=0, scope=scopes.get)
    trust.annotate([GpuReading(DEVICES[0], pids=(10,)), GpuReading(DEVICES[1], pids=())])
    cred = (20).to_bytes(4, sys.byteorder) + bytes(8)
    assert trust.device(cred, 0, None) == "GPU-a"
    assert trust.device(cred, 1, None) is None  # the pod holds GPU 0, not GPU 1
    assert trust.device(cred, None, None) == ""  # names no GPU: a GPU process of this node may speak
    stranger = (11).to_bytes(4, sys.byteorder) + bytes(8)
    assert trust.device(stranger, None, None) is None
    invisible = (0).to_bytes(4, sys.byteorder) + bytes(8)  # another pid namespace: nothing to check
    assert trust.device(invisible, 0, None) is None


@pytest.mark.parametrize(
    ("cgroup", "scope"),
    [
        (
            "0::/kubepods.slice/kubepods-burstable.slice/"
            "kubepods-burstable-pod1234abcd_0000_1111_2222_333344445555.slice/cri-containerd-ab.scope\n",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_0000_1111_2222_333344445555.slice",
        ),
        (
            "12:devices:/kubepods/besteffort/pod1234abcd-0000-1111-2222-333344445555/0123abc\n",
            "/kubepods/besteffort/pod1234abcd-0000-1111-2222-333344445555",
        ),
        (
            "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n",
            "/system.slice/slurmstepd.scope/job_4242",
        ),
        ("4:cpuset:/slurm/uid_1000/job_77/step_batch/task_0\n", "/slurm/uid_1000/job_77"),
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
    ],
)
def test_job_scope_from_cgroup_paths(cgroup: str, scope: str | None) -> None:
    assert job_scope(cgroup) == scope


def test_mig_instances_are_named_by_uuid_only() -> None:
    devices = (
        GpuIdentity(0, "MIG-x", "T", "3g.40gb/1", 3 / 7),
        GpuIdentity(0, "MIG-y", "T", "4g.40gb/2", 4 / 7),
    )
    trust = Trust("off", devices, agent_uid=0)
    assert trust.device(None, 0, "MIG-y") == "MIG-y"
    assert trust.device(None, 0, None) == ""  # index 0 is ambiguous on a MIG GPU: maps nothing


def test_sim_agent_rejects_another_users_spoof_and_says_how_it_checks(shared_dir: Path) -> None:
    """Issue 13 item 1 end to end: `nobody` sends gpu 0 / job "spoofed"; GPU 0 keeps its sim job."""
    uid = nobody()
    with run_agent(shared_dir, "--interval", "0.2", gpus=2) as agent:
        assert agent.socket.parent == shared_dir
        send_as(agent.socket, uid, "spoofed", n=20)
        deadline = time.monotonic() + 10
        text = agent.metrics()
        while 'result="rejected"} 20.0' not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            text = agent.metrics()
        assert 'gpulens_agent_datagrams_total{result="rejected"} 20.0' in text
        assert 'job_id="spoofed"' not in text
        assert 'trust="uid"' in text
        assert 'gpulens_gpu_up{gpu="0",job_id="sim-llm-pretrain"' in text


# -- item 2: the socket directory -----------------------------------------------------------------


def test_missing_socket_directories_are_created_0755(tmp_path: Path) -> None:
    """0755: searchable by the trainers of other users (a root agent's /run/gpulens), writable by the
    agent alone. Created 0700, a non-root trainer got EACCES and its records were dropped."""
    target = tmp_path / "gpulens-1000" / "gpulens"
    secure_dir(target, uid=os.geteuid())
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755


def test_another_user_can_send_through_a_created_socket_directory(shared_dir: Path) -> None:
    """The socket in a directory the agent (root) created: `nobody` can connect and send."""
    got: list[bytes] = []
    server = DatagramServer(shared_dir / "made" / "agent.sock", lambda batch, creds: got.extend(batch))
    try:
        code = (
            "import os, socket, sys; os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]));"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(b'{}', sys.argv[1])"
        )
        subprocess.run([sys.executable, "-c", code, str(server.path), str(nobody())], check=True)
    finally:
        server.stop()


def test_a_world_writable_root_ancestor_without_sticky_bit_is_refused(shared_dir: Path) -> None:
    """Root-owned, 0777, no sticky bit: another user could rename the socket's directory away and
    bind a socket of their own in its place; only a root-owned ancestor nobody else writes (or a
    sticky one like /tmp) ends the walk."""
    open_dir = shared_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(GpulensError, match="writable by other users"):
        secure_dir(open_dir / "gpulens", uid=os.geteuid())


def test_a_directory_another_user_created_is_refused(shared_dir: Path) -> None:
    """Before the fix the agent bound inside a pre-created /tmp/gpulens-<uid> and the attacker captured it."""
    uid = nobody()
    planted = shared_dir / "gpulens-0"
    planted.mkdir(mode=0o777)
    os.chown(planted, uid, uid)
    with pytest.raises(GpulensError, match="owned by uid"):
        DatagramServer(planted / "agent.sock", lambda batch, creds: None)
    assert not (planted / "agent.sock").exists()
    planted.rmdir()


@pytest.mark.parametrize("kind", ["symlink", "group-writable"])
def test_symlinked_or_shared_directories_are_refused(tmp_path: Path, kind: str) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    target = tmp_path / "sock-dir"
    if kind == "symlink":
        target.symlink_to(real)
        reason = "symlink"
    else:  # writable by a group other than the agent's own (a user-private group would be fine)
        target.mkdir()
        target.chmod(0o775)
        os.chown(target, -1, pwd.getpwnam("nobody").pw_gid)
        reason = "writable by other users"
    with pytest.raises(GpulensError, match=reason):
        secure_dir(target, uid=os.geteuid())


def test_a_root_owned_sticky_directory_like_tmp_is_fine() -> None:
    secure_dir(Path("/tmp"), uid=os.geteuid())  # the check script binds /tmp/<name>.sock


def test_group_write_on_the_agents_own_group_is_fine(tmp_path: Path) -> None:
    target = tmp_path / "umask-002"
    target.mkdir()
    target.chmod(0o775)  # a user-private group under umask 002 (Debian/Ubuntu defaults)
    secure_dir(target, uid=os.geteuid(), gid=target.stat().st_gid)


def test_trainer_names_its_device_by_uuid_from_the_environment() -> None:
    from gpulens.trainer.context import visible_gpu_uuid

    assert visible_gpu_uuid({"CUDA_VISIBLE_DEVICES": "MIG-1,MIG-2"}, 1) == "MIG-2"
    assert visible_gpu_uuid({"NVIDIA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, 1) == "GPU-bb"
    assert (
        visible_gpu_uuid({"CUDA_VISIBLE_DEVICES": "1", "NVIDIA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, 0)
        == "GPU-bb"
    )
    assert visible_gpu_uuid({"CUDA_VISIBLE_DEVICES": "0,1"}, 0) is None
    assert visible_gpu_uuid({}, 0) is None


def test_socket_records_carry_the_senders_credentials(tmp_path: Path) -> None:
    got: list[tuple[list[bytes], list[bytes]]] = []
    server = DatagramServer(tmp_path / "s.sock", lambda batch, creds: got.append((batch, creds)))
    server.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(json.dumps({"v": 1}).encode(), str(server.path))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.stop()
    sender = decode_cred(got[0][1][0])
    assert sender is not None and sender.pid == os.getpid() and sender.uid == os.geteuid()


def test_auto_trust_is_uid_for_sim_pid_with_processes_else_off() -> None:
    from gpulens.collector.agent import trust_mode
    from gpulens.collector.backends.dcgm import DcgmBackend
    from gpulens.collector.backends.nvml import NvmlBackend
    from gpulens.collector.backends.sim import SimBackend
    from tests.collector.fake_dcgm import FakeDcgmSession
    from tests.collector.fake_nvml import FakeGpu, make_fake_nvml

    nvml = NvmlBackend(make_fake_nvml([FakeGpu("GPU-0", pids=(1,))]))
    assert trust_mode("auto", SimBackend(1)) == "uid"
    assert trust_mode("auto", nvml) == "pid"
    assert trust_mode("auto", DcgmBackend(FakeDcgmSession(gpus=1))) == "off"  # no process list
    assert trust_mode("off", nvml) == "off"
    nvml.close()
