"""Run a notebook's code cells in the live Jupyter server's kernel, as a user pressing Run does.

Piped into the Jupyter member (`kubectl exec -i POD -- /opt/venv/bin/python3 - NOTEBOOK`), it
opens a session on NOTEBOOK (a path under the server's root) through the server's REST API,
which starts the notebook's kernel in the server, reads the notebook from the server, sends
each code cell to that kernel over its websocket channel (Jupyter's message protocol), prints
what the cells print, and deletes the session at the end. Exits 1 when a cell raises.

Uses only what the Spark image's venv has (requests, websocket-client); the token is the
member's JUPYTER_TOKEN, the port JUPYTER_PORT (default 8888).
"""
import json
import os
import sys
import time
import uuid

import requests
import websocket

BASE = "127.0.0.1:%s" % os.environ.get("JUPYTER_PORT", "8888")
AUTH = {"Authorization": "token " + os.environ["JUPYTER_TOKEN"]}
CELL_TIMEOUT = 600


def api(method, path, **kw):
    r = requests.request(method, "http://%s/api/%s" % (BASE, path), headers=AUTH, timeout=60, **kw)
    r.raise_for_status()
    return r.json() if r.content else None


def message(session, code):
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "username": "director-boot-test",
            "session": session,
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def run_cell(ws, session, code):
    """Sends one cell; prints its output; returns False if it raised."""
    msg = message(session, code)
    ws.send(json.dumps(msg))
    ok, idle, replied = True, False, False
    deadline = time.time() + CELL_TIMEOUT
    while not (idle and replied):
        if time.time() > deadline:
            sys.exit("a cell ran past %d s" % CELL_TIMEOUT)
        m = json.loads(ws.recv())
        if m.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
            continue
        kind, content = m["msg_type"], m["content"]
        if kind == "stream":
            sys.stdout.write(content["text"])
        elif kind == "execute_result":
            print(content["data"].get("text/plain", ""))
        elif kind == "error":
            ok = False
            print("\n".join(content["traceback"]), file=sys.stderr)
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
        elif kind == "execute_reply":
            replied = True
            ok = ok and content["status"] == "ok"
    sys.stdout.flush()
    return ok


def main():
    path = sys.argv[1]
    notebook = api("GET", "contents/" + path)["content"]
    kernel = notebook["metadata"]["kernelspec"]["name"]
    session = api(
        "POST",
        "sessions",
        json={"path": path, "type": "notebook", "name": path, "kernel": {"name": kernel}},
    )
    kid = session["kernel"]["id"]
    print("session %s, kernel %s (%s)" % (session["id"], kid, kernel), file=sys.stderr)
    try:
        ws = websocket.create_connection(
            "ws://%s/api/kernels/%s/channels" % (BASE, kid),
            header=["%s: %s" % kv for kv in AUTH.items()],
            timeout=CELL_TIMEOUT,
        )
        cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        client = uuid.uuid4().hex
        for i, cell in enumerate(cells):
            code = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            print("cell %d of %d" % (i + 1, len(cells)), file=sys.stderr)
            if not run_cell(ws, client, code):
                sys.exit("cell %d raised" % (i + 1))
        ws.close()
    finally:
        api("DELETE", "sessions/" + session["id"])


if __name__ == "__main__":
    main()
