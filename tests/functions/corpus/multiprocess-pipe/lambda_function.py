"""Parallel work in child processes that report back over pipes
(multiprocessing.Process and Pipe: Lambda has no /dev/shm, so no Queue or
Pool)."""

import os
from multiprocessing import Pipe, Process


def measure(words, conn):
    conn.send({"pid": os.getpid(), "lengths": {word: len(word) for word in words}})
    conn.close()


def lambda_handler(event, context):
    processes = []
    parent_connections = []
    for chunk in event["chunks"]:
        parent_conn, child_conn = Pipe()
        parent_connections.append(parent_conn)
        processes.append(Process(target=measure, args=(chunk, child_conn)))
    for process in processes:
        process.start()
    replies = [conn.recv() for conn in parent_connections]
    for process in processes:
        process.join()
    lengths = {}
    for reply in replies:
        lengths.update(reply["lengths"])
    pids = {reply["pid"] for reply in replies}
    return {
        "lengths": lengths,
        "exit_codes": [process.exitcode for process in processes],
        "children": len(pids),
        "parent_not_a_child": os.getpid() not in pids,
    }
