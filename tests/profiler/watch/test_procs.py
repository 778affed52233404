"""The process tree from /proc: a fake /proc (ranks from environ, zombies) and the real one (a child's child)."""
import os
import subprocess
import sys
import time

from gpuplan.profiler.watch.procs import PAGE_BYTES, ProcTree, parent_of, peak_rss_bytes, rss_bytes


def _proc(root, pid, ppid, rss_pages, env=None, state="S", comm="python"):
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_bytes(f"{pid} ({comm}) {state} {ppid} 1 1 0 -1".encode())
    (d / "statm").write_bytes(f"1000 {rss_pages} 10 1 0 100 0".encode())
    (d / "cmdline").write_bytes(b"python\0train.py\0")
    (d / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in (env or {}).items()))


def test_torchrun_workers_are_followed_with_their_ranks(tmp_path):
    _proc(tmp_path, 10, 1, 100)                                      # torchrun
    _proc(tmp_path, 11, 10, 2000, {"RANK": "0", "LOCAL_RANK": "0"})
    _proc(tmp_path, 12, 10, 2100, {"RANK": "1", "LOCAL_RANK": "1"})
    _proc(tmp_path, 13, 11, 50, comm="pt_data_worker (x)")           # a DataLoader worker; ')' in its name
    _proc(tmp_path, 20, 1, 999)                                      # not the run's
    (tmp_path / "self").mkdir()
    tree = ProcTree(10, tmp_path)
    assert tree.pids() == [10, 11, 12, 13]
    procs = {p.pid: p for p in tree.processes()}
    assert (procs[11].rank, procs[11].local_rank, procs[12].rank, procs[10].rank) == (0, 0, 1, None)
    assert procs[12].rss_bytes == 2100 * PAGE_BYTES and procs[13].ppid == 11
    assert procs[10].command == "python train.py"
    assert tree.alive()
    (tmp_path / "10" / "stat").write_bytes(b"10 (python) Z 1 1 1")   # exited, not yet reaped
    assert not tree.alive()


def test_parent_of_a_command_with_spaces_and_parentheses():
    assert parent_of(b"42 (my (odd) cmd) R 7 42 42 0") == 7


def test_the_real_tree_sees_a_grandchild():
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(3)'])"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        tree = ProcTree(child.pid)
        deadline = time.monotonic() + 10
        while len(tree.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        procs = tree.processes()
        assert len(procs) == 2 and procs[1].ppid == child.pid
        assert all(p.rss_bytes and p.rss_bytes > 0 for p in procs)
    finally:
        child.kill()
        child.wait()


def test_own_memory():
    assert rss_bytes() > 0 and peak_rss_bytes() >= rss_bytes() - PAGE_BYTES * 64
    assert rss_bytes(os.getpid()) > 0


def test_the_children_files_are_walked_where_the_kernel_has_them(tmp_path):
    for pid, ppid in ((10, 1), (11, 10), (12, 11), (20, 1)):
        _proc(tmp_path, pid, ppid, 100)
    for pid, kids in ((10, "11"), (11, "12 "), (12, "")):
        (tmp_path / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (tmp_path / str(pid) / "task" / str(pid) / "children").write_text(kids)
    (tmp_path / "11" / "stat").write_bytes(b"11 (python) S 99 1 1")   # a wrong ppid: the walk must not read it
    assert ProcTree(10, tmp_path).pids() == [10, 11, 12]
