"""The relay's ASGI handler (gateway_site/asgi.py) leaves no reference cycle behind when the client's disconnect
arrives as the response ends (every stream a client reads to its end): before, the listener's RequestAborted,
re-raised in the handler, tied the handler's frame (the request, its body, the response) into its traceback,
kept until a full collection (README, memory). Run in a subprocess: importing gateway_site.asgi builds the
application and freezes the collector."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import asyncio, gc, weakref
from gateway_site import asgi

handler, requests = asgi.RelayASGIHandler(), []
create_request = handler.create_request

def tracked(scope, body_file):
    request, error = create_request(scope, body_file)
    requests.append(weakref.ref(request))
    return request, error

handler.create_request = tracked
scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b"", "headers": [],
         "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000), "scheme": "http", "root_path": "",
         "http_version": "1.1", "asgi": {"version": "3.0"}}

async def run():
    ended, sent = asyncio.Event(), []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        await ended.wait()   # the client goes away as soon as it has the whole response
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            ended.set()

    await handler.handle(scope, receive, send)
    return sent

gc.disable()
sent = asyncio.run(run())
print(sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]).decode(), requests[0]() is None)
'''


def test_a_request_the_client_leaves_at_its_end_is_freed_without_the_collector():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["200", '{"status":"ok"}', "True"], out.stdout
