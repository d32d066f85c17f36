"""CQL client of the Cassandra lab test (PyPI's cassandra-driver), run from outside the cluster.

    cql_rows.py HOST PORT write ROWS [CL]  keyspace lab (replication factor 3), table rows,
                                           ROWS rows written at consistency CL (default QUORUM)
    cql_rows.py HOST PORT read ROWS [CL]   reads every row back at consistency CL (ONE, QUORUM,
                                           ALL); fails unless all ROWS are there and right

HOST:PORT is one member's CQL NodePort. The driver talks to that address only (the others'
addresses are pod IPs, not reachable from outside), and that member coordinates.
Prints one JSON line: {"rows": N, "seconds": S}.

Exit status 75 (EX_TEMPFAIL) when requests only timed out or found replicas unavailable (a
member stalled on a loaded host; the caller may run the same idempotent command again); 1 when a
row read back is missing or wrong, which a retry must never paper over.
"""
import json
import sys
import time

from cassandra import ConsistencyLevel, OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.policies import WhiteListRoundRobinPolicy


# A timeout or an unavailable replica: the cluster was slow, not wrong.
TRANSIENT = (OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout)


def transient(exc):
    return isinstance(exc, TRANSIENT)


def main():
    host, port, action, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    cl = ConsistencyLevel.name_to_value[sys.argv[5] if len(sys.argv) > 5 else "QUORUM"]
    profile = ExecutionProfile(
        load_balancing_policy=WhiteListRoundRobinPolicy([host]),
        consistency_level=cl,
        request_timeout=30,
    )
    cluster = Cluster(
        [host],
        port=port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        protocol_version=5,
        connect_timeout=20,
        control_connection_timeout=20,
    )
    session = cluster.connect()
    t0 = time.time()
    if action == "write":
        session.execute(
            "CREATE KEYSPACE IF NOT EXISTS lab WITH replication = "
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        )
        session.execute("CREATE TABLE IF NOT EXISTS lab.rows (id int PRIMARY KEY, v text)")
        insert = session.prepare("INSERT INTO lab.rows (id, v) VALUES (?, ?)")
        results = execute_concurrent_with_args(
            session, insert, [(i, "row-%d" % i) for i in range(rows)], concurrency=64,
            raise_on_first_error=False,
        )
        failed = [r for r in results if not r.success]
        if failed:
            print("write: %d of %d failed: %s" % (len(failed), rows, failed[0].result_or_exc),
                  file=sys.stderr)
            sys.exit(75 if all(transient(r.result_or_exc) for r in failed) else 1)
    elif action == "read":
        select = session.prepare("SELECT v FROM lab.rows WHERE id = ?")
        results = execute_concurrent_with_args(
            session, select, [(i,) for i in range(rows)], concurrency=64,
            raise_on_first_error=False,
        )
        wrong, errors = [], []
        for i, (ok, res) in enumerate(results):
            if not ok:
                errors.append((i, res))
                continue
            got = list(res)
            if len(got) != 1 or got[0].v != "row-%d" % i:
                wrong.append((i, got))
        if wrong:
            sys.exit("read at %s: %d of %d rows missing or wrong, e.g. %s"
                     % (sys.argv[5], len(wrong), rows, wrong[:3]))
        if errors:
            print("read at %s: %d of %d requests failed, e.g. %s"
                  % (sys.argv[5], len(errors), rows, errors[:3]), file=sys.stderr)
            sys.exit(75 if all(transient(e) for _, e in errors) else 1)
    else:
        sys.exit("unknown action " + action)
    print(json.dumps({"rows": rows, "seconds": round(time.time() - t0, 1)}))
    cluster.shutdown()


if __name__ == "__main__":
    try:
        main()
    except (NoHostAvailable,) + TRANSIENT as e:
        # Schema statements, connecting, or the control connection: slow, not wrong.
        print("transient: %r" % e, file=sys.stderr)
        sys.exit(75)
