"""Real network partitions on this machine: one network namespace per node on a bridge, cut with nftables.

`Network(count)` makes a bridge in the root namespace, with two addresses there (`client_address`, where the tests'
clients connect from, and `service_address`, for etcd), and `count` namespaces, each joined to the bridge by a veth
pair and holding one address (`address(i)` for node i, from 1). A process started with `exec_prefix(i)` in front
of its command runs in node i's namespace. `isolate(i, from_addresses)` drops every packet between node i and
those addresses, both ways, with an nftables table inside node i's namespace, as a cut cable would: nothing is
refused, connections just stop answering. Another `isolate` of the same node cuts more, in one atomic change of the
rules. `heal(i)` removes the table. `destroy()` removes everything it made.

Needs root, `ip` (iproute2) and `nft` (nftables); bin/setup installs them. Names carry the test process's id, so
runs side by side do not collide.
"""
import itertools
import os
import random
import subprocess

_made = itertools.count()


def _run(*command):
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Network:
    def __init__(self, count):
        tag = f"{os.getpid() % 100000}{next(_made)}"
        self.bridge = f"lbbr{tag}"[:15]
        self.namespaces = [f"lbns{tag}n{index + 1}" for index in range(count)]
        self.veths = [f"lbv{tag}n{index + 1}"[:15] for index in range(count)]
        # A /24 out of 10.0.0.0/8 unlikely to be in use here; the tests only talk within it.
        self.prefix = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self.client_address = f"{self.prefix}.1"
        self.service_address = f"{self.prefix}.2"
        self.created = False
        self.cut = {}

    def address(self, node):
        return f"{self.prefix}.{10 + node}"

    def exec_prefix(self, node):
        """The command prefix that runs a program in node `node`'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[node - 1]]

    def create(self):
        self.created = True
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        for address in (self.client_address, self.service_address):
            _run("ip", "addr", "add", f"{address}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for node, (namespace, veth) in enumerate(zip(self.namespaces, self.veths), start=1):
            _run("ip", "netns", "add", namespace)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _run("ip", "link", "set", veth, "master", self.bridge, "up")
            inside = ["ip", "netns", "exec", namespace]
            _run(*inside, "ip", "addr", "add", f"{self.address(node)}/24", "dev", "eth0")
            _run(*inside, "ip", "link", "set", "eth0", "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
        return self

    def isolate(self, node, from_addresses):
        """Drops every packet between node `node` and each of `from_addresses` (besides those cut already), both
        ways, until `heal(node)`."""
        self.cut[node] = self.cut.get(node, set()) | set(from_addresses)
        addresses = ", ".join(sorted(self.cut[node]))
        # Declared, deleted and declared again in one transaction: the new rules replace the old ones atomically.
        rules = (
            "table inet partition\ndelete table inet partition\n"
            "table inet partition {\n"
            "  chain input { type filter hook input priority 0; policy accept;"
            f" ip saddr {{ {addresses} }} drop; }}\n"
            "  chain output { type filter hook output priority 0; policy accept;"
            f" ip daddr {{ {addresses} }} drop; }}\n"
            "}\n"
        )
        subprocess.run([*self.exec_prefix(node), "nft", "-f", "-"], input=rules.encode(), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def heal(self, node):
        self.cut.pop(node, None)
        subprocess.run([*self.exec_prefix(node), "nft", "delete", "table", "inet", "partition"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def destroy(self):
        if not self.created:
            return
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "delete", namespace], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "delete", self.bridge], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.created = False
