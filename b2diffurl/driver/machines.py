"""Several machines: the launch variables (accelerate's flags of the same names) and the ports they meet on."""

from b2diffurl.variables import parse_value


def machine_values(given, num_processes):
    """({NUM_MACHINES, MACHINE_RANK, MAIN_PROCESS_IP, MAIN_PROCESS_PORT}, problem lines) of a run on
    several machines (accelerate's flags of the same names; NUM_PROCESSES is the total over all of
    them, as accelerate's --num_processes). The defaults are one machine."""
    lines, out = [], {}
    for name, default, low in (("NUM_MACHINES", 1, 1), ("MACHINE_RANK", 0, 0), ("MAIN_PROCESS_PORT", 29500, 1)):
        raw = given.get(name, "").strip() or str(default)
        value, problem = parse_value(name, raw, default)
        if problem is None and not low <= value <= (65535 - 15 if name == "MAIN_PROCESS_PORT" else value):
            problem = f"{name}={raw} must be " + (
                "a port, 1..65520 (the launches meet on it and the 15 ports above it, in turn)"
                if name == "MAIN_PROCESS_PORT"
                else f">= {low}"
            )
        lines += [problem] if problem else []
        out[name] = default if problem else value
    out["MAIN_PROCESS_IP"] = given.get("MAIN_PROCESS_IP", "").strip()
    machines, rank = out["NUM_MACHINES"], out["MACHINE_RANK"]
    if rank >= machines:
        lines.append(
            f"MACHINE_RANK={rank} must be below NUM_MACHINES={machines} (0 on the main machine, 1 .. {machines - 1} on "
            "the others)"
        )
    if machines > 1:
        if not out["MAIN_PROCESS_IP"]:
            lines.append(
                f"MAIN_PROCESS_IP is not set: with NUM_MACHINES={machines} give every machine the address of machine "
                "rank 0"
            )
        if num_processes % machines:
            lines.append(
                f"NUM_PROCESSES={num_processes} must be a multiple of NUM_MACHINES={machines}: it is the total "
                "over all machines, as accelerate's --num_processes (e.g. 2 machines x 4 GPUs: 8)"
            )
    return out, lines


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def ephemeral_ports(path=EPHEMERAL_RANGE_FILE):
    """(first, last) port of the range the system hands to outgoing connections, or None where it
    cannot be read (not Linux)."""
    try:
        with open(path) as f:
            first, last = (int(v) for v in f.read().split()[:2])
    except (OSError, ValueError):
        return None
    return first, last


def port_warning(machines, ephemeral):
    """A line when a run on several machines meets on ports of the ephemeral range ``(first, last)``
    (None where it is unknown): an outgoing connection may take one of them mid-run and stop that
    launch's rendezvous. None otherwise."""
    if machines["NUM_MACHINES"] == 1 or ephemeral is None:
        return None
    base = machines["MAIN_PROCESS_PORT"]
    if base + 15 < ephemeral[0] or base > ephemeral[1]:
        return None
    return (
        f"MAIN_PROCESS_PORT={base}: the launches meet on ports {base}..{base + 15}, inside this machine's ephemeral "
        f"range {ephemeral[0]}..{ephemeral[1]}, from which outgoing connections take ports; one taken mid-run stops "
        f"that launch. Choose a base port of at most {ephemeral[0] - 16} (the default 29500 usually is)"
    )


def machines_text(values):
    machines = values.get("NUM_MACHINES", 1)
    if machines == 1:
        return ""
    main = f"{values['MAIN_PROCESS_IP']}:{values['MAIN_PROCESS_PORT']}"
    return f" on {machines} machines (this one: rank {values['MACHINE_RANK']}, main {main})"
