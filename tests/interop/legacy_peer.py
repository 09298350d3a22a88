"""The real Python kafka-rpc 1.0.8 (from PyPI, venv of scripts/pyenv-seed) on one side of a
legacy-format test; the Rust side is our server or our LegacyClient.

  legacy_peer.py client BOOTSTRAP NAME VERIFY PASSWORD
      A KRPCClient calls the service NAME and prints one JSON object: each call's result, and
      for calls that raise remotely the exception the client unpickled and logged.
  legacy_peer.py server BOOTSTRAP NAME VERIFY PASSWORD SERVER_NAME
      A KRPCServer serving NAME with add(a, b), echo(x) and fail(message) (raises ValueError);
      prints "ready" once it polls, then serves until killed.

VERIFY is 0 or 1 (the package's verify=); PASSWORD is "-" for none (its encrypt=).
"""
import json
import logging
import sys


def settings(verify, password):
    kwargs = {"verify": verify == "1"}
    if password != "-":
        kwargs["encrypt"] = password
    return kwargs


class Raised(logging.Handler):
    """Collects the exceptions the client logs (it unpickles a reply's exception and logs it)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        if isinstance(record.msg, BaseException):
            self.seen.append(repr(record.msg))


def client(bootstrap, name, verify, password):
    from kafka_rpc import KRPCClient

    raised = Raised()
    logging.getLogger("kafka_rpc.client").addHandler(raised)
    logging.getLogger("kafka_rpc.client").setLevel(logging.ERROR)
    c = KRPCClient(bootstrap, topic_name=name, max_polling_timeout=0.002, **settings(verify, password))
    out = {"handshaked": c.handshaked.get(name, False)}

    def call(label, method, *args, **kwargs):
        before = len(raised.seen)
        res = c.call(method, *args, timeout=20, **kwargs)
        entry = {"ret": res["ret"], "server_id": res["server_id"]}
        if len(raised.seen) > before:
            entry["exception"] = raised.seen[-1]
        out[label] = entry

    call("add", "add", 1, 2)
    call("add_kwargs", "add", 1, b=2)
    call("add_all_kwargs", "add", b=2.5, a=1)
    call("echo", "echo", {"k": [1, "x", None], "n": -7})
    call("fail", "fail", "boom")
    call("bad_kwarg", "add", 1, c=2)
    call("unknown", "no_such_method")
    c.close()
    print(json.dumps(out), flush=True)


class Sum:
    def add(self, a, b):
        return a + b

    def echo(self, x):
        return x

    def fail(self, message):
        raise ValueError(message)


def server(bootstrap, name, verify, password, server_name):
    from kafka_rpc import KRPCServer

    s = KRPCServer(bootstrap, handle=Sum(), topic_name=name, server_name=server_name,
                   max_polling_timeout=0.01, **settings(verify, password))
    print("ready", flush=True)
    s.server_forever()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mode, args = sys.argv[1], sys.argv[2:]
    {"client": client, "server": server}[mode](*args)
