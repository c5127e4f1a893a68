#!/usr/bin/env python3
"""Peer server for benchmarks: seed 001 task 1's remote queue as the seed
would write it in Python with grpcio (a thread pool behind one lock).

    grpc_queue_server.py [--bind HOST] [--workers N] PORT SIZE

Speaks proto/queue.proto with queue-grpc-server's semantics (SPEC "queue
over gRPC"), including INVALID_ARGUMENT for an empty item, one holding
whitespace, or one over 65,536 bytes. First stdout line, like the Rust
server's: `Listening on 127.0.0.1:PORT (grpc queue, size SIZE)` (PORT 0
prints the real port). SIGINT or SIGTERM: stop, exit 0.

Needs grpcio and grpcio-tools (the stubs are generated from the .proto at
start, into a temporary directory).
"""

import argparse
import collections
import os
import signal
import sys
import tempfile
import threading
from concurrent import futures

MAX_ITEM_BYTES = 65536
WHITESPACE = b" \t\n\r\x0c"
PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs(out_dir):
    from grpc_tools import protoc

    rc = protoc.main([
        "grpc_tools.protoc",
        "-I" + os.path.normpath(PROTO),
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
        "queue.proto",
    ])
    if rc != 0:
        sys.exit("error: cannot generate stubs from proto/queue.proto")
    sys.path.insert(0, out_dir)
    import queue_pb2
    import queue_pb2_grpc

    return queue_pb2, queue_pb2_grpc


def invalid(item):
    data = item.encode("utf-8")
    if not data:
        return "the item is empty"
    if len(data) > MAX_ITEM_BYTES:
        return "the item is longer than 65536 bytes"
    if any(b in WHITESPACE for b in data):
        return "the item holds whitespace"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("port", type=int)
    parser.add_argument("size", type=int)
    args = parser.parse_args()
    if args.size < 1:
        parser.error("SIZE must be 1 or more")

    import grpc

    with tempfile.TemporaryDirectory(prefix="grpc-queue-stubs-") as tmp:
        pb, pb_grpc = load_stubs(tmp)

        class Queue(pb_grpc.QueueServicer):
            def __init__(self, size):
                self.size_ = size
                self.items = collections.deque()
                self.lock = threading.Lock()

            def put(self, request, context):
                why = invalid(request.item)
                if why:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, why)
                with self.lock:
                    if len(self.items) < self.size_:
                        self.items.append(request.item)
                        return pb.PutReply(ok=True)
                    return pb.PutReply(ok=False)

            def peek(self, request, context):
                with self.lock:
                    if self.items:
                        return pb.ItemReply(empty=False, item=self.items[0])
                    return pb.ItemReply(empty=True)

            def pop(self, request, context):
                with self.lock:
                    if self.items:
                        return pb.ItemReply(empty=False, item=self.items.popleft())
                    return pb.ItemReply(empty=True)

            def size(self, request, context):
                with self.lock:
                    return pb.SizeReply(size=len(self.items))

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
        pb_grpc.add_QueueServicer_to_server(Queue(args.size), server)
        host = "[%s]" % args.bind if ":" in args.bind else args.bind
        port = server.add_insecure_port("%s:%d" % (host, args.port))
        if port == 0:
            sys.exit("error: cannot listen on %s:%d" % (host, args.port))
        server.start()
        print("Listening on %s:%d (grpc queue, size %d)" % (host, port, args.size), flush=True)

        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        server.stop(grace=5).wait()


if __name__ == "__main__":
    main()
