"""Vowpal Wabbit options that read or write files or open network sockets, refused in
`learner.vw_args`: nudgebandit owns every file it keeps (models live in checkpoints and
snapshots) and runs VW as a library, never as a server.

Derived from VW 9.11's whole option table (`Workspace.get_config(
filtered_enabled_reductions_only=False)`: 502 options over every reduction), read option by
option: every option whose value is a path or a host, or whose effect is file or network I/O.
`--active` is in it because VW then runs as a daemon (measured: it listens on
0.0.0.0:26542). `tests/unit/test_vw_args_io.py` reads the installed VW's table again and fails
on any option that looks like I/O and is neither here nor in its list of reviewed harmless
ones, so an upgrade of VW cannot slip a new one past this table.
"""

from __future__ import annotations

WRITES = "writes files"
READS = "reads files"
READS_WRITES = "reads and writes files"
SOCKET = "opens network sockets"

#: flag (each alias too) -> what it does
IO_FLAGS: dict[str, str] = {
    # model, prediction, audit and metrics output
    "-f": WRITES, "--final_regressor": WRITES,
    "--readable_model": WRITES, "--invert_hash": WRITES,
    "--dump_json_weights_experimental": WRITES,
    "--output_feature_regularizer_binary": WRITES, "--output_feature_regularizer_text": WRITES,
    "--save_per_pass": WRITES, "--search_save_every_k_runs": WRITES,
    "-p": WRITES, "--predictions": WRITES,
    "-r": WRITES, "--raw_predictions": WRITES,
    "--audit_regressor": WRITES, "--extra_metrics": WRITES, "--epsilon_decay_audit": WRITES,
    "--pid_file": WRITES, "--port_file": WRITES,
    # example caches
    "-c": READS_WRITES, "--cache": READS_WRITES, "--cache_file": READS_WRITES,
    "-k": READS_WRITES, "--kill_cache": READS_WRITES,
    # model, regularizer, mask, data and dictionary input
    "-i": READS, "--initial_regressor": READS, "--input_feature_regularizer": READS,
    "--feature_mask": READS, "-d": READS, "--data": READS,
    "--dictionary": READS, "--dictionary_path": READS, "--search_allowed_transitions": READS,
    # daemon mode, cluster all-reduce, sending examples to another VW
    "--daemon": SOCKET, "--port": SOCKET, "--foreground": SOCKET, "--num_children": SOCKET,
    "--active": SOCKET, "--span_server": SOCKET, "--span_server_port": SOCKET,
    "--unique_id": SOCKET, "--total": SOCKET, "--node": SOCKET, "--sendto": SOCKET,
}  # fmt: skip


def flag_name(token: str) -> str:
    """The option a VW token sets: `--readable_model=m.txt` -> `--readable_model`,
    `-pout.txt` -> `-p` (VW takes a short option's value glued on)."""
    if token.startswith("--"):
        return token.split("=", 1)[0]
    if token.startswith("-") and len(token) > 2:
        return token[:2]
    return token


def io_flags(vw_args: str) -> list[str]:
    """The flags of `vw_args` that read or write files or open sockets, in order, once each."""
    found = [flag_name(t) for t in vw_args.split() if flag_name(t) in IO_FLAGS]
    return list(dict.fromkeys(found))


def io_problem(vw_args: str) -> str | None:
    """Why `vw_args` is refused (each I/O flag named with what it does), or None."""
    flags = io_flags(vw_args)
    if not flags:
        return None
    what = "; ".join(f"{flag} {IO_FLAGS[flag]}" for flag in flags)
    return (
        f"vw_args must not contain {flags}: {what}; nudgebandit owns model files (checkpoints "
        "and snapshots) and runs VW as a library, never as a server"
    )
