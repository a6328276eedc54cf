"""The Markdown table of one benchmark run (``benchmarks/results/<date>-<host>.md``)."""
from __future__ import annotations

from typing import Any


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _passes(row: dict[str, Any]) -> str:
    counted = row.get("passes")
    if not counted:
        return ""
    return " + ".join(f"{n} {'fwd' if kind == 'forward' else 'fwd+bwd'}" for kind, n in counted.items() if n)


def markdown(header: dict[str, Any], rows: list[dict[str, Any]], notes: list[str]) -> str:
    """Header (versions, hardware, load), one table of timed rows, one of memory rows, then the notes."""
    lines = [f"# medxai benchmarks {header['date']} on {header['host']} ({'quick' if header['quick'] else 'full'})", "",
             f"- device: {header['device']}; CPU: {header['cpu_model']} ({header['cores']} cores), RAM {header['ram_gib']:.1f} GiB",
             f"- torch threads: {header.get('torch_threads', '?')}; CPU affinity: {header.get('cpu_affinity', 'not recorded')}; "
             f"OMP_NUM_THREADS: {header.get('omp_num_threads') or 'unset'}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()),
             f"- 1-minute load average at start: {header['load_average_start']}, at end: {header.get('load_average_end')}"]
    sessions = header.get("sessions") or []
    if len(sessions) > 1:  # a resumed run: each row's `session` says which of these measured it
        lines += [f"- session {index}: started {item['started']} on {item['cpu_model']}, {item['torch_threads']} torch thread(s), "
                  f"affinity {item['cpu_affinity']}" for index, item in enumerate(sessions)]
    lines.append("")
    lines += [f"> {note}" for note in notes] + [""]
    columns = ["name", "size", "median s", "spread s", "n", "passes", "floor s", "x floor", "x b1 floor",
               "peer", "peer s", "x peer", "load before/after"]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        if "median_s" not in row and "error" not in row:
            continue
        if "error" in row:
            lines.append(f"| {row['name']} | {row.get('size', '')} | failed: {row['error']} |" + " |" * (len(columns) - 3))
            continue
        load = row.get("load_before"), row.get("load_after")
        reused = " (previous run, not re-measured)" if "not re-measured" in str(row.get("source", "")) else ""
        lines.append("| " + " | ".join([
            row["name"] + reused, str(row["size"]), _seconds(row["median_s"]), _seconds(row.get("spread_s")), str(row.get("repeats", "")),
            _passes(row), _seconds(row.get("floor_s")), _ratio(row.get("ratio_to_floor")),
            _ratio(row.get("ratio_to_b1_floor")), row.get("peer", ""),
            _seconds(row.get("peer_median_s")), _ratio(row.get("ratio_to_peer")),
            f"{load[0]}/{load[1]}" if load[0] is not None else ""]) + " |")
    memory = [row for row in rows if "peak_rss_mib" in row]
    if memory:
        lines += ["", "| memory case | batch (auto) | peak RSS MiB | added by the method MiB | estimated pass MiB | peak CUDA MiB |",
                  "|---|---|---|---|---|---|"]
        for row in memory:
            estimated = f"{row['estimated_pass_mib']:.0f}" if "estimated_pass_mib" in row else ""
            lines.append(f"| {row['name']} | {row.get('batch_size', '')} | {row['peak_rss_mib']:.0f} | "
                         f"{row.get('added_rss_mib', 0):.0f} | {estimated} | {_seconds(row.get('peak_cuda_mib'))} |")
    return "\n".join(lines) + "\n"
