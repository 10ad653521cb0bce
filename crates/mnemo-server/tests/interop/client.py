"""Interop check with an independent gRPC implementation (Python grpcio).

Usage: client.py HOST:PORT PROTO_ROOT
Generates stubs from the same .proto with grpcio-tools, then: health check, create a
space, one Observe session of 200 observations (all ACCEPTED, dense sequences), a
duplicate re-send, a streaming Recall, and RecallOnce. Exits non-zero on any mismatch.
"""
import os
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

addr, proto_root = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp()
rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}", f"--grpc_python_out={out}",
                  os.path.join(proto_root, "mnemo/v1/mnemo.proto")])
assert rc == 0, "protoc failed"
sys.path.insert(0, out)
from mnemo.v1 import mnemo_pb2 as pb  # noqa: E402
from mnemo.v1 import mnemo_pb2_grpc as rpc  # noqa: E402

channel = grpc.insecure_channel(addr)
health = health_pb2_grpc.HealthStub(channel)
status = health.Check(health_pb2.HealthCheckRequest(service="mnemo.v1.Mnemo")).status
assert status == health_pb2.HealthCheckResponse.SERVING, status

stub = rpc.MnemoStub(channel)
stub.CreateSpace(pb.CreateSpaceRequest(name="py", dim=4))

N = 200


def vec(i):
    return [float(i % 7), 1.0, float(i % 3), 0.5]


def requests():
    yield pb.ObserveRequest(init=pb.Init(space="py", session_id="python-client"))
    for i in range(1, N + 1):
        yield pb.ObserveRequest(observation=pb.Observation(content=f"py {i}", embedding=vec(i), sequence=i))
    yield pb.ObserveRequest(observation=pb.Observation(content="again", embedding=vec(1), sequence=1))
    yield pb.ObserveRequest(close=pb.Close(drain=True))


acks, init_ack, closed = [], None, None
for msg in stub.Observe(requests()):
    kind = msg.WhichOneof("kind")
    if kind == "init_ack":
        init_ack = msg.init_ack
    elif kind == "acks":
        acks.extend(msg.acks.acks)
    elif kind == "closed":
        closed = msg.closed
assert init_ack is not None and init_ack.next_sequence == 1, init_ack
accepted = sorted(a.sequence for a in acks if a.status == pb.ACCEPTED)
assert accepted == list(range(1, N + 1)), accepted[:10]
dups = [a for a in acks if a.status == pb.DUPLICATE]
first = next(a for a in acks if a.sequence == 1 and a.status == pb.ACCEPTED)
assert len(dups) == 1 and dups[0].memory_id == first.memory_id, dups
assert closed is not None and closed.final_sequence == N, closed

batches = list(stub.Recall(pb.RecallRequest(space="py", cue=vec(5), k=6, batch_size=4)))
assert len(batches) == 2 and not batches[-1].more, batches
snap = batches[0].snapshot_lsn
assert snap == N and all(b.snapshot_lsn == snap for b in batches)
assert all(m.lsn <= snap for b in batches for m in b.memories)
once = stub.RecallOnce(pb.RecallRequest(space="py", cue=vec(5), k=1))
assert once.memories[0].score > 0.99, once
print("python interop OK:", len(accepted), "accepted,", len(dups), "duplicate, recall snapshot", snap)
