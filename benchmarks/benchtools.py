"""What the benchmark scripts share: progress on stderr, medians, fresh broker processes on ephemeral ports, and
preparing the page cache so that timed writes start from the same state."""
import os
import socket
import subprocess
import sys
import time


def log(*words):
    print(*words, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, name):
    for _ in range(400):
        if process.poll() is not None:
            sys.exit(f"{name} exited with {process.returncode} while starting")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"{name} did not listen on {port}")


class Broker:
    """A fresh broker process on an ephemeral port of 127.0.0.1."""

    def __init__(self, name, command, port, workdir):
        self.name = name
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)
        wait_for_port(port, self.process, name)

    def reset_peak(self):
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as refs:
            refs.write("5")

    def peak_mib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
        return 0

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_logbroker(server, workdir):
    port = free_port()
    directory = os.path.join(workdir, "logbroker")
    os.makedirs(directory)
    config = os.path.join(directory, "server.properties")
    with open(config, "w") as out:
        out.write(f"node.id=1\nprocess.roles=broker,controller\nlisteners=PLAINTEXT://127.0.0.1:{port}\n"
                  f"log.dirs={directory}/logs\nlog.segment.delete.delay.ms=0\n")
    return Broker("LogBroker", [server, config], port, workdir)


def median(values):
    """The middle value (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


def settle():
    """Writes back what earlier runs left dirty, so its writeback does not stall the next one (seen: a p99 of
    14 ms right after 2 GB of large records, 0.6 ms without them)."""
    os.sync()


def write_zeros(path, megabytes):
    """dd of `megabytes` MiB with bs=1M into the page cache (no fsync)."""
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={megabytes}", "status=none"], check=True)


def warm(workdir, megabytes):
    """Writes back what is dirty, then writes and deletes a scratch file of `megabytes` MiB, so the timed writes that
    follow get page-cache memory that was just in use: on this VM memory the guest has not used for a while faults
    to the host again on first touch, and the same dd of 2 GB ran at 1.8 GB/s and then at 0.45 GB/s (the kernel's
    copy into the page cache took 78% of the broker's time). The sync comes first because memory left free during a
    long sync goes cold again."""
    settle()
    scratch = os.path.join(workdir, "warm.out")
    write_zeros(scratch, megabytes)
    os.remove(scratch)
