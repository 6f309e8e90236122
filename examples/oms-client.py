#!/usr/bin/env python3
"""A minimal OMS client of `floorhand bridge`, with nothing but Python's standard library.

It pushes a wave to a device, waits until the device has applied it, then consumes events
by cursor. A real OMS stores each page of events and the `next` cursor in ONE database
transaction, and starts from the stored cursor after a restart: that gives exactly-once
consumption. Here the cursor is kept in a file after each page is printed.

    python3 examples/oms-client.py --url http://127.0.0.1:8080 \
        --token-file floorhand-bridge.token --site site1 --device hh-01 \
        --wave examples/wave.json --cursor-file oms.cursor --events 10
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def call(args, method, path, body=None, headers=None):
    """One request; returns (status, JSON). Errors are JSON too: {"error", "field"}."""
    with open(args.token_file) as f:
        token = f.readline().strip()
    req = urllib.request.Request(args.url + path, data=body, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def push_wave(args):
    """POSTs the wave; the Idempotency-Key makes a retry after a timeout safe."""
    with open(args.wave, "rb") as f:
        body = f.read()
    path = "/v1/devices/%s/%s/messages" % (args.site, args.device)
    key = "wave-file-%s" % args.wave
    status, answer = call(args, "POST", path, body, {"Idempotency-Key": key})
    if status != 202:
        sys.exit("push refused (%d): %s" % (status, answer))
    dseq = answer["dseq"]
    print("queued as message %d" % dseq, file=sys.stderr)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        status, state = call(args, "GET", "%s/%d" % (path, dseq))
        if state.get("state") == "applied":
            print("message %d applied by %s" % (dseq, args.device), file=sys.stderr)
            return
        if state.get("state") == "rejected":
            sys.exit("message %d rejected: %s" % (dseq, state.get("reason")))
        time.sleep(0.2)
    sys.exit("message %d not applied within %d s" % (dseq, args.timeout))


def consume(args):
    """Long-polls events after the stored cursor; prints one JSON line per event."""
    try:
        with open(args.cursor_file) as f:
            cursor = f.read().strip()
    except FileNotFoundError:
        cursor = ""
    seen = 0
    deadline = time.time() + args.timeout
    while seen < args.events and time.time() < deadline:
        status, page = call(args, "GET", "/v1/events?after=%s&limit=100&wait=5" % cursor)
        if status != 200:
            sys.exit("events refused (%d): %s" % (status, page))
        for event in page["events"]:
            print(json.dumps(event, sort_keys=True))
            seen += 1
        sys.stdout.flush()
        cursor = page["next"]
        with open(args.cursor_file, "w") as f:
            f.write(cursor)
    if seen < args.events:
        sys.exit("only %d of %d events within %d s" % (seen, args.events, args.timeout))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--token-file", default="floorhand-bridge.token")
    p.add_argument("--site", default="site1")
    p.add_argument("--device", required=True)
    p.add_argument("--wave", help="a wave as JSON (examples/wave.json); none: only consume")
    p.add_argument("--cursor-file", default="oms.cursor")
    p.add_argument("--events", type=int, default=0, help="stop after this many events")
    p.add_argument("--timeout", type=int, default=60, help="seconds for each step")
    args = p.parse_args()
    if args.wave:
        push_wave(args)
    if args.events:
        consume(args)


if __name__ == "__main__":
    main()
